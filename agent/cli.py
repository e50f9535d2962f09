"""``loa``: the local command line for technicians and maintenance crews.

    loa [--config FILE] status [--json] [--lang L]   what the agent is doing (from the store if down)
    loa [--config FILE] playlog [--since WHEN] [--limit N] [--json]
    loa [--config FILE] reload                re-read the local schedule file: accepted or why not
    loa [--config FILE] play FILE [--level L] [--zones Z,...]   play a file now (a crew's test)
    loa [--config FILE] stop                  stop what plays now
    loa [--config FILE] test relays|tone ...  a crew's checks at the pole (agent/crew_cli.py)
    loa [--config FILE] logs [--since 1h] [-n N] [-f] [--events]
    loa fm demod ... / loa fm scan            FM field tools (see docs/FM.md)

What a crew reads (``status``, ``test``, ``logs --events``) is in Vietnamese unless ``--lang en``
or ``LOA_LANG=en`` (agent/messages.py); ``--json`` is the same in every language.

Exit codes: 0 done (or accepted: taken, still being carried out), 1 not running (status) or
refused, 2 a bad argument or a refused schedule file, 6 the agent does not answer (for ``status``:
it holds its socket but did not answer in time), 8 no permission for the agent's socket or store,
130 interrupted (Ctrl-C).  Every error is one plain line on stderr, never a traceback.

``--config`` is the daemon's config (default /etc/loa/agent.yaml): it says where the control
socket and the store are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Config, load_config
from agent.control import request
from agent.crew_cli import add_crew_commands
from agent.messages import LANGUAGES, Words, choose_language, words
from agent.status import NOT_ANSWERING, no_store_status, not_answering_status, offline_status, render
from agent.store import PlayRecord, Store, iso
from agent.version import VERSION
from foundation.errors import LoaError, NoAnswerError, NotRunningError, StoreError, UsageError, report
from foundation.units import parse_duration

DEFAULT_CONFIG = Path("/etc/loa/agent.yaml")
# Longer than the command handler's wait (5 s), after which the agent answers "accepted": a main
# loop that is slow to carry a command out still gets its answer to the crew.
ANSWER_TIMEOUT = 10.0


def parse_since(text: str, now: datetime) -> datetime:
    """``24h`` / ``7d`` (that long ago), or an ISO date or date-time (device-local if naive)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: expected a duration such as 24h or 7d, or a date such as 2026-11-20"
        ) from exc
    return moment


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    try:
        status = request(config.control.socket, "status")
    except NotRunningError as exc:
        status = {**_stored_status(config), "note": str(exc)}
    except NoAnswerError as exc:  # it holds its socket: running, but busy or stuck
        status = not_answering_status(_stored_status(config), str(exc))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(render(status, config.device.timezone, args.say.language))
    if status.get("state") == NOT_ANSWERING:
        return NoAnswerError.exit_code
    return 0 if status.get("running") else 1


def _stored_status(config: Config) -> dict[str, Any]:
    """What the store knows, for when the agent does not answer."""
    try:
        store = Store.open_readonly(config.storage.dir)
    except LoaError as exc:
        return no_store_status(config, str(exc))
    try:
        return offline_status(config, store, datetime.now(UTC))
    except sqlite3.DatabaseError as exc:  # a store a power cut left corrupt: the agent sets it aside
        return no_store_status(config, f"the store {store.path} cannot be read: {exc}")
    finally:
        store.close()


def cmd_playlog(config: Config, args: argparse.Namespace) -> int:
    since = None
    if args.since:
        moment = parse_since(args.since, datetime.now(UTC))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=config.device.timezone)
        since = iso(moment)
    store = Store.open_readonly(config.storage.dir)
    try:
        records = store.play_log(since=since, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.__dict__ for r in records], indent=2))
    else:
        print(_playlog_table(records, config))
    return 0


def _playlog_table(records: list[PlayRecord], config: Config) -> str:
    tz = config.device.timezone

    def local(stamp: str | None) -> str:
        return (
            datetime.fromisoformat(stamp).astimezone(tz).strftime("%m-%d %H:%M:%S.%f")[:-3] if stamp else "-"
        )

    header = f"{'scheduled':<18} {'started':<18} {'ended':<18} {'outcome':<11} {'level':<9} item / reason"
    rows = [header]
    for r in records:
        reason = f"  ({r.reason})" if r.reason else ""
        rows.append(
            f"{local(r.scheduled_start):<18} {local(r.actual_start):<18} {local(r.ended):<18} "
            f"{r.outcome:<11} {r.level:<9} {r.item_id}{reason}"
        )
    if len(rows) == 1:
        rows.append("(no plays recorded)")
    return "\n".join(rows)


def cmd_reload(config: Config, args: argparse.Namespace) -> int:
    say: Words = args.say
    reply = request(config.control.socket, "reload", timeout=ANSWER_TIMEOUT)
    if reply.get("result") in ("accepted", "duplicate"):
        return _print_ack(reply, "", say)
    if reply.get("ok"):
        print(say("answer.schedule_accepted", items=reply.get("items"), version=reply.get("version")))
        return 0
    print(say("answer.schedule_refused", reason=say.reason(str(reply.get("reason") or reply.get("error")))))
    for problem in reply.get("problems") or []:
        print(f"  {problem}")
    return 2


def cmd_play(config: Config, args: argparse.Namespace) -> int:
    file = Path(args.file).absolute()
    zones = [zone.strip() for zone in args.zones.split(",") if zone.strip()] if args.zones else []
    reply = request(
        config.control.socket, "play", timeout=ANSWER_TIMEOUT, file=str(file), level=args.level, zones=zones
    )
    return _print_ack(reply, args.say("answer.playing", what=file), args.say)


def cmd_stop(config: Config, args: argparse.Namespace) -> int:
    reply = request(config.control.socket, "stop", timeout=ANSWER_TIMEOUT)
    return _print_ack(reply, args.say("answer.stopped"), args.say)


def _print_ack(reply: dict[str, Any], done: str, say: Words) -> int:
    """One plain line for a command's answer, in the crew's words: done, accepted (and what it
    waits for), or refused; the agent's own reasons translated where the catalogue knows them."""
    result, reason = reply.get("result"), say.reason(str(reply.get("reason") or reply.get("error") or ""))
    lines = {
        "done": reason or done,
        "accepted": say("answer.accepted", reason=reason),
        "duplicate": say("answer.duplicate", reason=reason),
    }
    line = lines.get(str(result), say("refused", reason=reason))
    print(say("command", line=line, id=reply.get("id")) if reply.get("id") else line)
    return 0 if reply.get("ok") else 1


class Parser(argparse.ArgumentParser):
    """A mistyped command line is one plain line and exit 2, like every other error of ``loa``."""

    def error(self, message: str) -> Any:  # argparse's own: usage lines, then the message
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="loa", description="Loa loudspeaker controller: local tools")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="agent config (%(default)s)")
    parser.add_argument("--version", action="version", version=f"loa {VERSION}")
    language = Parser(add_help=False)
    language.add_argument(
        "--lang",
        default=argparse.SUPPRESS,
        help=f"{' or '.join(LANGUAGES)}: the crew's words (default: $LOA_LANG, else vi)",
    )
    parser.add_argument("--lang", default=argparse.SUPPRESS, help="vi or en (default: $LOA_LANG, else vi)")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", parents=[language], help="what the agent is doing")
    status.add_argument("--json", action="store_true", help="one JSON object (the same in every language)")
    status.set_defaults(handler=cmd_status)
    playlog = sub.add_parser("playlog", help="proof of play")
    playlog.add_argument("--since", help="24h, 7d, or a date/time (device time if no offset)")
    playlog.add_argument("--limit", type=int, help="at most this many, the latest")
    playlog.add_argument("--json", action="store_true", help="a JSON list")
    playlog.set_defaults(handler=cmd_playlog)
    reload = sub.add_parser("reload", help="re-read the local schedule file")
    reload.set_defaults(handler=cmd_reload)
    play = sub.add_parser("play", help="play an audio file now (logged as a local command)")
    play.add_argument("file", help="a WAV, MP3 or OGG file on this box")
    play.add_argument(
        "--level",
        choices=("normal", "priority", "emergency"),
        default="normal",
        help="as a schedule item's priority; emergency pre-empts everything (%(default)s)",
    )
    play.add_argument("--zones", help="comma-separated zone names (default: every zone)")
    play.set_defaults(handler=cmd_play)
    stop = sub.add_parser("stop", help="stop what plays now (an FM relay pauses for 30 minutes)")
    stop.set_defaults(handler=cmd_stop)
    add_crew_commands(sub, language)
    _add_fm(sub)
    return parser


def _add_fm(sub: Any) -> None:
    try:
        from fm_receiver.cli import add_fm_commands
    except ImportError:  # the FM tools are optional on a box without numpy/scipy
        return
    add_fm_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    # `loa status | head -3`: a closed pipe ends the output quietly, as for any Unix tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # What the store logs when it cannot read (it carries on for the daemon) is one line like any error.
    logging.basicConfig(level=logging.WARNING, format="loa: %(message)s")
    try:
        return _run(build_parser(), argv)
    except LoaError as exc:
        return report("loa", exc)
    except sqlite3.DatabaseError as exc:  # the store itself, read where the daemon would carry on
        return report("loa", StoreError(f"the store cannot be read: {exc}"))
    except KeyboardInterrupt:  # Ctrl-C, as at the end of `loa logs -f`
        print(file=sys.stderr)
        return 130
    except OSError as exc:  # a file or socket the errors above do not name: still one plain line
        return report(
            "loa", UsageError(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        )
    except Exception as exc:  # a bug: one line for the crew, the details for whoever reads the code
        return report("loa", LoaError(f"unexpected error ({type(exc).__name__}: {exc}); please report it"))


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        if args.command == "fm":
            return int(args.func(args))
        args.say = words(choose_language(getattr(args, "lang", None), os.environ))
        return int(args.handler(load_config(args.config), args))
    except argparse.ArgumentTypeError as exc:  # a value checked after parsing (playlog --since)
        raise UsageError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
