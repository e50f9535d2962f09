"""A 10,000-item schedule: the idle daemon's CPU and memory, its start-up, and `loa status` (issue 7).

    .venv/bin/python -m bench.scale_bench [--items 10000] [--idle 60] [--compare REV] [--write]

A real ``loa-agent run`` process (``python -m agent.daemon``; null audio backend, gpiozero mock
pins, ``clock.require_sync: false``) runs a schedule file of ``--items`` daily rules at spread
times (every rule a different time of day, so no two share a parsed rule) plus a few hundred
one-off ``at`` items.  Nothing is due for the first 20 minutes, so the daemon is idle with a full
schedule.  Measured, from outside the process:

- start-up: from spawn until the control socket answers with the clock trusted and the first
  upcoming items (the schedule parsed, the first loop pass made);
- idle CPU over ``--idle`` seconds after start-up has settled: CPU ticks from /proc/PID/stat over
  wall time;
- RSS: the peak since spawn (VmHWM, start-up included) and the steady idle RSS (VmRSS, sampled
  every second);
- a ``loa status`` answer: the control socket round trip (median and max of 50 requests), and the
  whole ``loa status --json`` command (median of 5 runs, Python start-up included).

``--compare REV`` runs the same measurement on git revision ``REV`` of this repository (exported
with ``git archive`` to a temporary directory) before measuring this tree, so the before and after
figures come from one run on one machine.  ``--write`` puts the section into docs/BENCHMARKS.md
(replacing the section of the same title; ``bench.run_all`` writes it with every other section).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.control import request
from bench.proc_usage import watch
from drivers.wav_samples import tone, write_wav
from foundation.errors import NotRunningError

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent
QUIET = timedelta(minutes=20)  # nothing is due this long after the bench starts
AT_ITEMS = 300
TITLE = "## A 10,000-item schedule (issue 7)"
BASE_REV = "53e262b"  # the commit issue 7 was measured on


def write_schedule(path: Path, count: int, now: datetime) -> None:
    """``count`` daily rules at distinct local times outside the quiet window, and AT_ITEMS ``at``
    items on the following days."""
    quiet_start = now.astimezone(TZ)
    day = 86_400
    busy = day - int(QUIET.total_seconds())
    lines = ["items:"]
    for n in range(count):
        moment = quiet_start + QUIET + timedelta(seconds=(n * busy) // count)
        lines.append(
            f"  - {{id: r{n:05d}, audio: beep.wav, rrule: 'FREQ=DAILY;BYHOUR={moment.hour};"
            f"BYMINUTE={moment.minute};BYSECOND={moment.second}', dtstart: '2025-01-01 "
            f"{moment:%H:%M:%S}'}}"
        )
    for n in range(AT_ITEMS):
        moment = quiet_start + timedelta(days=1 + n % 30, seconds=QUIET.total_seconds() + n * 7)
        lines.append(f"  - {{id: a{n:04d}, audio: beep.wav, at: '{moment.isoformat()}'}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _config(directory: Path) -> Path:
    path = directory / "agent.yaml"
    path.write_text(
        """device: {id: bench-scale, timezone: Asia/Ho_Chi_Minh}
storage: {dir: state}
audio: {backend: "null"}
gpio: {pin_factory: mock, amplifiers: [{name: zone-1, pin: 17}, {name: zone-2, pin: 27}]}
schedule: {file: schedule.yaml}
clock: {require_sync: false}
control: {socket: agent.sock}
logging: {level: warning}
""",
        encoding="utf-8",
    )
    return path


def _ready(socket: Path) -> bool:
    try:
        status = request(socket, "status", timeout=5.0)
    except NotRunningError:
        return False
    return bool(status.get("clock", {}).get("trusted")) and bool(status.get("next"))


@contextmanager
def _daemon(tree: Path, directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """The daemon of source tree ``tree`` running in ``directory``, and its start-up time."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "agent.daemon", "--config", "agent.yaml", "run"]
    began = time.monotonic()
    proc = subprocess.Popen(command, cwd=directory, env=env)
    try:
        while not _ready(directory / "agent.sock"):
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon of {tree} exited with {proc.returncode}")
            if time.monotonic() - began > 300:
                raise RuntimeError(f"the daemon of {tree} did not start within 300 s")
            time.sleep(0.05)
        yield proc, time.monotonic() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _status_times(tree: Path, directory: Path) -> tuple[list[float], list[float]]:
    """Socket round trips of 50 status requests, and 5 runs of the whole `loa status --json`."""
    socket_ms = []
    for _ in range(50):
        began = time.perf_counter()
        request(directory / "agent.sock", "status")
        socket_ms.append((time.perf_counter() - began) * 1000)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "agent.cli", "--config", "agent.yaml", "status", "--json"]
    cli_ms = []
    for _ in range(5):
        began = time.perf_counter()
        subprocess.run(command, cwd=directory, env=env, check=True, capture_output=True)
        cli_ms.append((time.perf_counter() - began) * 1000)
    return socket_ms, cli_ms


def measure(tree: Path, items: int, idle: float, settle: float = 5.0) -> dict[str, Any]:
    """Run the daemon of ``tree`` on an ``items``-rule schedule and measure it."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_wav(directory / "beep.wav", tone(1000.0, 0.3, 48000), 48000)
        write_schedule(directory / "schedule.yaml", items, datetime.now(UTC))
        _config(directory)
        with _daemon(tree, directory) as (proc, startup):
            time.sleep(settle)  # start-up work (the first chunk's expansion, imports) is not idle
            watched = watch(proc.pid, idle)
            socket_ms, cli_ms = _status_times(tree, directory)
            answered = request(directory / "agent.sock", "status")
    return {
        "items": answered["schedule"]["items"],
        "startup_s": round(startup, 2),
        "idle_s": round(watched.wall_s, 1),
        "cpu_percent_of_one_core": round(watched.cpu_percent_of_one_core, 3),
        "rss_peak_mb": round(watched.last.rss_peak_mb, 1),
        "rss_idle_mean_mb": round(statistics.fmean(watched.rss_mb), 1),
        "rss_idle_max_mb": round(max(watched.rss_mb), 1),
        "status_socket_p50_ms": round(statistics.median(socket_ms), 2),
        "status_socket_max_ms": round(max(socket_ms), 2),
        "status_cli_p50_ms": round(statistics.median(cli_ms), 1),
    }


def machine() -> str:
    from bench.run_all import machine  # run_all imports this module: ask at run time

    return machine()


def have(rev: str) -> bool:
    """Whether this repository has revision ``rev`` (a shallow clone may not)."""
    found = subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True)
    return found.returncode == 0


@contextmanager
def exported(rev: str) -> Iterator[Path]:
    """Git revision ``rev`` of this repository, exported to a temporary directory."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        # tar(1), not tarfile: Debian 12's Python 3.11.2 has no extraction filters (3.11.4 has)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, capture_output=True)
        yield Path(tmp)


def run(items: int = 10_000, idle: float = 60.0, compare: str | None = BASE_REV) -> dict[str, Any]:
    """This tree's figures, and those of ``compare`` (when given) from the same run."""
    result: dict[str, Any] = {"items": items, "before_rev": compare, "before": None}
    result["measured"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
    if compare is not None:
        with exported(compare) as tree:
            result["before"] = measure(tree, items, idle)
        print("before", result["before"], flush=True)
    result["after"] = measure(ROOT, items, idle)
    print("after", result["after"], flush=True)
    return result


ROWS = [
    ("start-up (spawn to first answer with the schedule)", "startup_s", "s"),
    ("idle CPU (share of one core)", "cpu_percent_of_one_core", "%"),
    ("RSS peak since spawn (VmHWM)", "rss_peak_mb", "MB"),
    ("RSS idle, mean", "rss_idle_mean_mb", "MB"),
    ("RSS idle, max", "rss_idle_max_mb", "MB"),
    ("`loa status` socket round trip, p50", "status_socket_p50_ms", "ms"),
    ("`loa status` socket round trip, max", "status_socket_max_ms", "ms"),
    ("`loa status --json` command, p50", "status_cli_p50_ms", "ms"),
]


def render(result: dict[str, Any]) -> str:
    before, after = result["before"], result["after"]
    head = "| measure | before | after |\n|---|---|---|" if before else "| measure | value |\n|---|---|"
    rows = []
    for label, key, unit in ROWS:
        cells = [f"{before[key]} {unit}"] if before else []
        rows.append(f"| {label} | " + " | ".join([*cells, f"{after[key]} {unit}"]) + " |")
    was = f" (before: commit `{result['before_rev']}`, the base of issue 7)" if before else ""
    cpu, rss = after["cpu_percent_of_one_core"], after["rss_peak_mb"]
    return f"""{TITLE}

Measured {result["measured"]}.
`bench/scale_bench.py`: the real daemon (`python -m agent.daemon run`, null audio backend,
mock pins, `clock.require_sync: false`) with {after["items"]} schedule items: {result["items"]}
daily rules, each at its own time of day, and {AT_ITEMS} `at` items on the next 30 days; nothing
is due while it is measured. Idle CPU over {after["idle_s"]} s and RSS from /proc after start-up
settled{was}.

{head}
{chr(10).join(rows)}

Targets: idle CPU ≤ 1 %: {_verdict(cpu, 1)}; RSS ≤ 80 MB: {_verdict(rss, 80)}. The `loa status --json`
command's time is the CLI starting (Python and its imports); the daemon's part is the socket
round trip.
Reproduce this section alone with `.venv/bin/python -m bench.scale_bench --write` (about
{_minutes(result)} minutes; it measures commit `{BASE_REV}` first, `--compare ''` this tree only).
"""


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "**NOT met**"


def _minutes(result: dict[str, Any]) -> int:
    """How long the default command (both revisions) takes, from this run's figures."""
    runs = [result["before"] or result["after"], result["after"]]
    return max(1, round(sum(r["startup_s"] + r["idle_s"] + 15 for r in runs) / 60))


def write_section(section: str, path: Path) -> None:
    """Replace the section titled TITLE in ``path`` (up to the next ``## ``), or append it."""
    text = path.read_text(encoding="utf-8")
    start = text.find(TITLE)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = text.find("\n## ", start + len(TITLE))
    tail = text[end + 1 :] if end >= 0 else ""
    path.write_text(text[:start] + section + ("\n" + tail if tail else ""), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--compare", default=BASE_REV, help="git revision to measure first ('' for none)")
    parser.add_argument("--write", action="store_true", help="put the section into docs/BENCHMARKS.md")
    args = parser.parse_args()
    result = run(args.items, args.idle, args.compare or None)
    section = render(result)
    print(section)
    if args.write:
        write_section(section, ROOT / "docs" / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
