"""``python -m demo`` (``make demo``): the central server, three boxes and two bulletins, on one machine.

1. ``loa-central init`` with an admin whose password is generated and printed once (and kept,
   mode 0600, in the run dir); ``device add`` registers three boxes under two communes of a province.
2. ``loa-central serve`` (the API, the pages and the embedded Mosquitto) and three ``loa-agent run``
   on gpiozero's mock pins, libVLC writing what each plays to ``output.wav`` in its directory.
3. As an operator, through the REST API: a chime uploaded as WAV for the whole province, and a text
   bulletin for one commune that the server speaks with espeak-ng, both within a minute.
4. While they play: ``loa status`` of one box and the central's ``GET /devices``; at the end the play
   logs that reached the central and the broadcast report (``GET /reports/broadcasts``).

``--quick`` starts the first bulletin 15 s after it is created instead of 30 s. The exit code is 0 when
every box played every bulletin meant for it to completion, 130 on Ctrl-C (everything is stopped
first), 1 otherwise. The agent-only demo is ``python -m agent.demo``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import requests

from demo import stack
from demo.operator import Operator, write_chime

logger = logging.getLogger("demo")
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FINAL = ("completed", "interrupted", "failed", "missed", "skipped")
TEXT = "Xin chào bà con xã Quảng Sơn. Chiều nay có mưa lớn, bà con chú ý đề phòng."


def banner(title: str) -> None:
    print(f"--- {title} " + "-" * max(4, 72 - len(title)), flush=True)


def devices_table(devices: list[dict[str, Any]]) -> str:
    lines = [f"{'box':<14} {'unit':<14} {'online':<7} {'playing':<14} manifest sent/in force"]
    for device in devices:
        playing = device["playing"]
        what = playing.get("item_id") or playing.get("source") if isinstance(playing, dict) else "-"
        manifest = device["manifest"]
        online = "yes" if device["online"] else "NO"
        versions = f"{manifest['sent'] or '-'}/{manifest['in_force'] or '-'}"
        lines.append(f"{device['id']:<14} {device['unit']:<14} {online:<7} {what or '-':<14} {versions}")
    return "\n".join(lines)


def units_tree(units: list[dict[str, Any]], devices: list[dict[str, Any]]) -> str:
    """The units as the central server has them (levels are data), each with its boxes."""
    lines: list[str] = []

    def add(parent: str | None, depth: int) -> None:
        for unit in (u for u in units if u["parent"] == parent):
            boxes = ", ".join(d["id"] for d in devices if d["unit"] == unit["id"])
            lines.append(
                f"{'  ' * depth}{unit['name']} ({unit['level']} {unit['id']}){': ' + boxes if boxes else ''}"
            )
            add(unit["id"], depth + 1)

    add(None, 0)
    return "\n".join(lines)


def logs_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'box':<14} {'item':<12} {'scheduled (UTC)':<24} {'started (UTC)':<24} outcome"]
    for row in sorted(rows, key=lambda r: (r["scheduled_start"], r["device_id"])):
        lines.append(f"{row['device_id']:<14} {row['item_id']:<12} {row['scheduled_start']:<24} "
                     f"{row['actual_start'] or '-':<24} {row['outcome']} {row['reason'] or ''}")  # fmt: skip
    return "\n".join(lines)


def report_table(report: dict[str, Any]) -> str:
    lines = [f"{'unit':<16} {'boxes':>5} {'scheduled':>9} {'completed':>9} {'failed':>6} {'missed':>6} ratio"]
    for unit in report["units"]:
        lines.append(f"{unit['name']:<16} {unit['boxes']:>5} {unit['scheduled']:>9} {unit['completed']:>9} "
                     f"{unit['failed']:>6} {unit['missed']:>6} {unit['ratio']}")  # fmt: skip
    return "\n".join(lines)


def expected_plays(created: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each bulletin's item id and the boxes it is scheduled on."""
    return {
        f"bulletin-{bulletin['id']}": sorted(
            box for box, status in bulletin["targets"].items() if status == "scheduled"
        )
        for bulletin in created
    }


def schedule(operator: Operator, run_dir: Path, lead: float) -> tuple[list[dict[str, Any]], datetime]:
    """The two bulletins, as an operator creates them; and the instant of the first."""
    chime = run_dir / "chuong-bao.wav"
    write_chime(chime)
    sha = operator.upload(chime)
    first = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=lead)
    whole = operator.bulletin("Chuông báo", {"units": [stack.PROVINCE[0]]}, first, audio_sha256=sha)
    second = first + timedelta(seconds=8)
    spoken = operator.bulletin("Thông báo thời tiết", {"communes": ["xa-quang-son"]}, second, text=TEXT)
    for bulletin, what in ((whole, "the chime (uploaded WAV) for the whole province"),
                           (spoken, "a text bulletin for Xã Quảng Sơn, spoken by espeak-ng")):  # fmt: skip
        boxes = ", ".join(f"{box} ({status})" for box, status in sorted(bulletin["targets"].items()))
        print(f"bulletin {bulletin['id']}: {what}: {boxes}")
    print(f"the first plays at {first:%H:%M:%S} (Asia/Ho_Chi_Minh), the second 8 s later\n", flush=True)
    return [whole, spoken], first


def watch(operator: Operator, config: Path, plays: dict[str, list[str]], until: float, every: float) -> bool:
    """Show the boxes until every play is final (True) or ``until`` (monotonic) has passed."""
    while True:
        logs = operator.call("GET", "/playlogs")
        final = {(r["item_id"], r["device_id"]) for r in logs if r["outcome"] in FINAL}
        if all((item, box) in final for item, boxes in plays.items() for box in boxes):
            return True
        if time.monotonic() > until:
            return False
        banner(f"at {datetime.now(TZ):%H:%M:%S}: loa status on {config.parent.name}")
        print(stack.loa_status(config))
        banner("GET /api/v1/devices on the central server")
        print(devices_table(operator.call("GET", "/devices")), flush=True)
        time.sleep(every)


def summarize(operator: Operator, run_dir: Path, plays: dict[str, list[str]], day: datetime) -> bool:
    """Print the play logs and the report, keep them in summary.json; whether every play completed."""
    logs = [row for row in operator.call("GET", "/playlogs") if row["item_id"] in plays]
    report = operator.report(day.date())
    banner("the play logs that reached the central server (GET /api/v1/playlogs)")
    print(logs_table(logs))
    banner(f"the broadcast report for {day:%Y-%m-%d} by commune (GET /api/v1/reports/broadcasts)")
    print(report_table(report))
    print("(ratio: minutes played over minutes scheduled; libVLC's afile output, the demo's sound card,")
    print(" writes faster than real time, so it comes out below 1 here)", flush=True)
    (run_dir / "summary.json").write_text(json.dumps({"playlogs": logs, "report": report}, indent=1,
                                                     ensure_ascii=False), encoding="utf-8")  # fmt: skip
    completed = {(r["item_id"], r["device_id"]) for r in logs if r["outcome"] == "completed"}
    return all((item, box) in completed for item, boxes in plays.items() for box in boxes)


def interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does: everything in the finally below


def demo(args: argparse.Namespace) -> bool:
    run_dir: Path = args.run_dir.resolve()
    stack.prepare_run_dir(run_dir)
    central = stack.Central(run_dir, stack.free_port(args.http_port), stack.free_port(None))
    password = central.set_up()
    configs = [stack.agent_config(box, run_dir, args.player) for box in stack.BOXES]
    processes: list[stack.Process] = []
    try:
        processes.append(central.start())
        for box, config in zip(stack.BOXES, configs, strict=True):
            processes.append(stack.start_agent(box, config))
        for process, config in zip(processes[1:], configs, strict=True):
            stack.wait_answering(process, config)
        banner("the central server")
        print(f"web pages: {central.url}/  (API: {central.url}/api/docs)")
        print(
            f"login: {central.admin} / {password}   (shown once; kept, mode 0600, in {central.password_file})"
        )
        print(f"logs: {central.config.parent}/serve.log and {run_dir}/boxes/*/agent.log\n", flush=True)
        operator = Operator(central.url, central.admin, password)
        every_box = {box.id for box in stack.BOXES}
        operator.until("/devices", lambda ds: {d["id"] for d in ds if d["online"]} == every_box,
                       "every box online", timeout=60)  # fmt: skip
        banner("the province, its communes and their boxes (GET /api/v1/units, GET /api/v1/devices)")
        print(units_tree(operator.call("GET", "/units"), operator.call("GET", "/devices")) + "\n", flush=True)
        created, first = schedule(operator, run_dir, args.lead)
        plays = expected_plays(created)
        until = time.monotonic() + args.lead + 8 + 60
        if not watch(operator, configs[0], plays, until, every=3 if args.quick else 5):
            logger.error("not every play log reached the central server in time")
        ok = summarize(operator, run_dir, plays, first)
        if args.stay and ok:
            print(f"\nstill running: {central.url}/ (Ctrl-C stops everything)", flush=True)
            signal.pause()
        return ok
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not leave a process behind
            signal.signal(signum, signal.SIG_IGN)
        for process in reversed(processes):
            process.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, default=Path("demo-stack"), help="where it all goes (%(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the first bulletin 15 s after it is made, not 30 s"
    )
    parser.add_argument(
        "--player", choices=("vlc", "null"), default="vlc", help="the boxes' player (%(default)s)"
    )
    parser.add_argument(
        "--http-port", type=int, default=8080, help="the web pages' port when free (%(default)s)"
    )
    parser.add_argument("--stay", action="store_true", help="keep running after the report, until Ctrl-C")
    args = parser.parse_args(argv)
    args.lead = 15.0 if args.quick else 30.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGTERM, interrupt)
    started = datetime.now(UTC)
    try:
        ok = demo(args)
    except KeyboardInterrupt:
        print("\ndemo: stopped: every process it started has stopped", flush=True)
        return 130
    except (stack.DemoError, requests.RequestException) as error:
        print(f"demo: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"\ndemo: {'every box played every bulletin' if ok else 'NOT every bulletin played'} "
          f"({(datetime.now(UTC) - started).total_seconds():.0f} s); all in {args.run_dir}/")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
