"""``loa test relays``, ``loa test tone`` and ``loa logs``: what a crew at the pole runs to check a box.

    loa test relays [--zones Z,...] [--seconds N]   click each zone's amplifier relay in turn
    loa test tone [--zone Z] [--seconds N] [--frequency HZ]   a tone through relays and player
    loa logs [--since 1h] [-n N] [-f] [--events]    the agent's journal, or its recorded events

Both tests go through the running agent's front door (the control socket), as any command does:
the agent refuses them while something plays, and records them.  Their words are the crew's
language (agent/messages.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.control import request
from agent.messages import Words
from agent.schedule_source import TEST_PREFIX
from agent.store import Store, iso
from agent.test_tone import DEFAULT_FREQUENCY, DEFAULT_SECONDS, FREQUENCIES, MAX_SECONDS
from foundation.errors import UsageError
from foundation.units import parse_duration

ANSWER_TIMEOUT = 10.0  # as agent.cli: longer than the command handler's wait
RELAY_SECONDS = (1, 3)  # each click is answered within the handler's 5 s wait
UNIT = "loa-agent"
DEFAULT_LINES = 50  # without --since or -n: the last this many
FOLLOW_EVERY = 1.0  # seconds between looks at the store for new events (loa logs --events -f)


# -- loa test ------------------------------------------------------------------------------------


def cmd_test_relays(config: Config, args: argparse.Namespace) -> int:
    say: Words = args.say
    zones = _zones(args.zones, config) or list(config.all_zones)
    busy = _busy(config, say, fm_too=True)
    if busy:
        print(busy)
        return 1
    print(say("test.relays.start", count=len(zones), seconds=args.seconds))
    for zone in zones:
        timeout = args.seconds + ANSWER_TIMEOUT
        reply = request(
            config.control.socket, "relay_test", timeout=timeout, zones=[zone], seconds=args.seconds
        )
        print(_relay_answer(reply, zone, args.seconds, say))
        if reply.get("result") != "done":
            return 1
    return 0


def _relay_answer(reply: dict[str, Any], zone: str, seconds: int, say: Words) -> str:
    reason = str(reply.get("reason") or reply.get("error") or "")
    if reply.get("result") == "done":
        cut = "cut short" in reason  # audio came: the test gave way to it
        return (
            say("test.relays.cut", zone=zone) if cut else say("test.relays.zone", zone=zone, seconds=seconds)
        )
    key = "test.relays.zone_pending" if reply.get("result") == "accepted" else "test.relays.zone_refused"
    return say("command", line=say(key, zone=zone, reason=say.reason(reason)), id=reply.get("id"))


def cmd_test_tone(config: Config, args: argparse.Namespace) -> int:
    say: Words = args.say
    zones = _zones(",".join(args.zone or []), config)
    busy = _busy(config, say, fm_too=False)
    if busy:
        print(busy)
        return 1
    reply = request(config.control.socket, "test_tone", timeout=ANSWER_TIMEOUT, zones=zones,
                    seconds=args.seconds, frequency=args.frequency)  # fmt: skip
    item = f"{TEST_PREFIX}{reply.get('id')}"
    shown = {"frequency": args.frequency, "seconds": args.seconds, "item": item}
    reason = say.reason(str(reply.get("reason") or reply.get("error") or ""))
    if reply.get("result") == "done":
        line = say("test.tone.done", zones=", ".join(zones or config.all_zones), **shown)
    elif reply.get("result") == "accepted":
        line = say("test.tone.waiting", reason=reason, **shown)
    else:
        line = say("refused", reason=reason)
    print(say("command", line=line, id=reply.get("id")) if reply.get("id") else line)
    return 0 if reply.get("ok") else 1


def _zones(text: str | None, config: Config) -> list[str]:
    """Zone names as a crew types them (comma-separated), each one the config knows."""
    zones = [zone.strip() for zone in (text or "").split(",") if zone.strip()]
    unknown = [zone for zone in zones if zone not in config.all_zones]
    if unknown:
        known = ", ".join(config.all_zones)
        raise UsageError(f"no amplifier for zone(s) {', '.join(unknown)} in {config.source} (zones: {known})")
    return zones


def _busy(config: Config, say: Words, *, fm_too: bool) -> str | None:
    """Why a test must wait, in the crew's words, or None.  The agent checks again (something may
    start meanwhile) and refuses in its own words."""
    status = request(config.control.socket, "status")
    playing = status.get("playing")
    if playing:
        level = say.known(f"level.{playing['level']}", str(playing["level"]))
        return say("test.busy", what=say("test.busy.playing", item=playing["item"], level=level))
    if fm_too and (status.get("fm") or {}).get("relaying"):
        return say("test.busy", what=say("test.busy.fm"))
    return None


# -- loa logs ------------------------------------------------------------------------------------


def cmd_logs(config: Config, args: argparse.Namespace) -> int:
    say: Words = args.say
    since = _since(args.since)
    if args.lines is None and since is None:
        args.lines = DEFAULT_LINES
    if not args.events:
        why = _no_journal()
        if why is None:
            command = journal_command(since, args.lines, args.follow)
            sys.stdout.flush()
            os.execvp(command[0], command)  # journalctl pages, follows and ends as a crew expects
        print(say("logs.no_journal", why=say(why)), file=sys.stderr)
    return _events(config, since, args, say)


def journal_command(since: datetime | None, lines: int | None, follow: bool) -> list[str]:
    """journalctl for the agent's unit, with times to the second in the box's own zone."""
    command = ["journalctl", "--unit", UNIT, "--no-pager", "--output", "short-iso"]
    if since is not None:
        command += ["--since", f"@{int(since.timestamp())}"]
    if lines is not None:
        command += ["--lines", str(lines)]
    if follow:
        command.append("--follow")
    return command


def _no_journal() -> str | None:
    """Why the systemd journal cannot be read here (a message id), or None when it can."""
    if shutil.which("journalctl") is None:
        return "logs.why.no_journalctl"
    if not Path("/run/systemd/system").is_dir():
        return "logs.why.no_systemd"
    return None


def _events(config: Config, since: datetime | None, args: argparse.Namespace, say: Words) -> int:
    """The agent's recorded events (the store's outbox), oldest first, in the crew's words."""
    store = Store.open_readonly(config.storage.dir)
    try:
        rows = store.events_after(since=iso(since), last=args.lines)
        for row in rows:
            print(_event_line(row, config, say))
        if not rows and not args.follow:
            print(say("logs.no_events", since=_local(since, config) if since else "-"))
        last = rows[-1]["id"] if rows else _newest(store)
        while args.follow:
            time.sleep(FOLLOW_EVERY)
            for row in store.events_after(after=last):
                print(_event_line(row, config, say), flush=True)
                last = row["id"]
    finally:
        store.close()
    return 0


def _newest(store: Store) -> int:
    rows = store.events_after(last=1)
    return int(rows[-1]["id"]) if rows else 0


def _event_line(row: dict[str, Any], config: Config, say: Words) -> str:
    at = datetime.fromisoformat(row["at"])
    kind = str(row["kind"])
    severity = {"error": "!", "warning": "~"}.get(str(row["severity"]), " ")
    return (
        f"{_local(at, config)} {severity} {say.known(f'kind.{kind}', kind)}: {say.reason(str(row['detail']))}"
    )


def _local(moment: datetime, config: Config) -> str:
    return moment.astimezone(config.device.timezone).strftime("%Y-%m-%d %H:%M:%S")


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a duration such as 30min, 1h or 2d") from None


# -- the parser ----------------------------------------------------------------------------------


def _whole(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return value

    return parse


def add_crew_commands(sub: Any, language: argparse.ArgumentParser) -> None:
    """``loa test relays``, ``loa test tone`` and ``loa logs``; ``language`` gives ``--lang``."""
    test = sub.add_parser("test", help="check the relays or the sound at the pole")
    tests = test.add_subparsers(dest="test", required=True)
    relays = tests.add_parser("relays", parents=[language], help="click each zone's relay in turn")
    relays.add_argument("--zones", help="comma-separated zone names (default: every zone)")
    relays.add_argument(
        "--seconds", type=_whole(*RELAY_SECONDS), default=2, help="each relay on (%(default)s s)"
    )
    relays.set_defaults(handler=cmd_test_relays)
    tone = tests.add_parser("tone", parents=[language], help="play a test tone (logged as local-test)")
    tone.add_argument(
        "--zone", action="append", help="a zone (repeat, or comma-separated; default: every zone)"
    )
    tone.add_argument(
        "--seconds",
        type=_whole(1, MAX_SECONDS),
        default=DEFAULT_SECONDS,
        help="how long, 1 to 60 s (%(default)s)",
    )
    tone.add_argument(
        "--frequency",
        type=_whole(*FREQUENCIES),
        default=DEFAULT_FREQUENCY,
        help="Hz, 100 to 4000 (%(default)s)",
    )
    tone.set_defaults(handler=cmd_test_tone)
    logs = sub.add_parser("logs", parents=[language], help="the agent's log (journal) or --events")
    logs.add_argument("--since", help="that long ago: 30min, 1h, 2d")
    logs.add_argument(
        "-n", "--lines", type=_whole(1, 100_000), help=f"only the last N ({DEFAULT_LINES} without --since)"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep showing new lines (Ctrl-C ends)")
    logs.add_argument("--events", action="store_true", help="the events the agent recorded, in plain words")
    logs.set_defaults(handler=cmd_logs)
