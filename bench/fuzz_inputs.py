"""Fuzz the readers of the files a technician edits: agent configs and schedule files.

    .venv/bin/python -m bench.fuzz_inputs [--cases 20000] [--seed 0] [--show N]

Each case takes one real file (``config.example.yaml``, ``agent.yaml``, the YAML files shown in
``docs/*.md``, and a schedule that uses every key), applies one to four mutations (mostly one: byte flips,
truncation, duplicated or dropped lines, YAML-special tokens, huge numbers, extreme dates, deep
nesting, aliases, recurrence parts, non-UTF-8 bytes), writes it to disk and reads it the way the
agent does: ``agent.config.load_config``, or ``agent.schedule_source.read_schedule_file`` and then
check-config's audio check (next to audio names that are a FIFO, a directory and a real file).

A reader must return, or raise ConfigError / ScheduleError whose every problem names the file and
none is the boundary's "bug in Loa" fallback.  Anything else is a crash.  Cases run in-process
with no timeout: what keeps them short is the readers' own bounds, and the slowest case is shown.
Case ``N`` of seed ``S`` is always the same file (``--show N`` prints it); ``tests/test_fuzz_inputs.py``
runs a few hundred in ``make test``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import load_config
from agent.schedule_source import check_audio, read_schedule_file
from foundation.errors import ConfigError, ScheduleError
from foundation.yaml_source import INTERNAL_FAILURE

REPO = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ZONES = frozenset({"zone-1", "zone-2", "north", "market"})

EVERY_KEY = b"""\
# A schedule that uses every key, so that mutations reach every field parser.
items:
  - id: morning-news
    audio: ban-tin-sang.mp3
    rrule: FREQ=DAILY;BYHOUR=6;BYMINUTE=30;UNTIL=20260301T000000
    dtstart: 2025-03-01 06:30
    valid_from: 2025-03-03T00:00:00+07:00
    valid_until: 2025-03-31
    zones: [north, market]
    volume: 80
    priority: normal
  - id: "weekly-2"
    audio: tiem-chung.mp3
    rrule: RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;BYHOUR=17;COUNT=10
    dtstart: 2025-03-01T17:00:00+07:00
    zones: [zone-1]
  - id: storm-no-3
    audio: bao-so-3.mp3
    priority: emergency
    at: 2025-03-02T17:00:00+07:00
"""

TOKENS = (
    ": ", ":", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b [*a, *a, *a, *a]", "? ", "|", ">",
    "'", '"', "#", "\n---\n", "\n...\n", "%YAML 1.1\n", "\t", "<<: *a", "~", "null", ".inf", ".nan",
    "-.inf", "0x1F", "0o17", "1_000", "190:20:30", "yes", "on", "!!binary aGk=", "!!python/object:os.system",
    "!secret ", "2025-03-01", "9999-12-31", "0001-01-01", "2025-02-30", "T25:00:00", "+99:00",
    ";FREQ=SECONDLY", ";BYSECOND=0,1,2", ";BYMINUTE=0,1,2,3", ";COUNT=99999", ";INTERVAL=0",
    ";INTERVAL=99999999999999999999", ";UNTIL=99991231", ";BYSETPOS=3", ";BYEASTER=0",
    ";BYMONTHDAY=30;BYMONTH=2", "\\x00", "\u2028", "\ufeff", "\u00e0", "\\", "%", "@", "`",
)  # fmt: skip
DATES = ("0001-01-01", "9999-12-31", "1900-01-01", "2199-12-31", "2200-01-01", "0000-00-00")


@dataclass(frozen=True)
class Seed:
    name: str
    kind: str  # "config" or "schedule"
    data: bytes
    good: bool = True  # reads without a problem as it is


def seeds() -> list[Seed]:
    """The real files the mutations start from."""
    found = [
        Seed("config.example.yaml", "config", (REPO / "config.example.yaml").read_bytes()),
        Seed("agent.yaml", "config", (REPO / "agent.yaml").read_bytes()),
        Seed("every-key schedule", "schedule", EVERY_KEY),
    ]
    fence = re.compile(r"```yaml file=(\S+)\n(.*?)```", re.DOTALL)
    for doc in sorted((REPO / "docs").glob("*.md")):
        for index, match in enumerate(fence.finditer(doc.read_text(encoding="utf-8"))):
            body = match.group(2).encode()
            kind = "schedule" if re.search(rb"^items:", body, re.MULTILINE) else "config"
            found.append(Seed(f"{doc.name} block {index} ({match.group(1)})", kind, body))
    with tempfile.TemporaryDirectory(prefix="loa-fuzz-") as root:
        return [replace(seed, good=read_case(seed.kind, seed.data, Path(root))[0]) for seed in found]


# -- mutations --------------------------------------------------------------------------------------


def _at(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: _at(data, rng)]


def duplicate_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True) or [b""]
    start = rng.randrange(len(lines))
    block = lines[start : start + rng.randint(1, 4)]
    return b"".join(lines[:start] + block * rng.randint(2, 50) + lines[start:])


def drop_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    if lines:
        del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def reindent(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    if lines:
        at = rng.randrange(len(lines))
        lines[at] = b" " * rng.choice([0, 1, 3, 8]) + lines[at].lstrip(b" ")
    return b"".join(lines)


def token(data: bytes, rng: random.Random) -> bytes:
    at = _at(data, rng)
    return data[:at] + rng.choice(TOKENS).encode() + data[at:]


def huge_number(data: bytes, rng: random.Random) -> bytes:
    """A number of up to 6000 digits, mostly where YAML reads a number (``pin: 17``)."""
    values = list(re.finditer(rb"(?<=: )-?\d+(?=[ ,}\]\n])", data))
    numbers = values if values and rng.random() < 0.8 else list(re.finditer(rb"\d+", data))
    digits = rng.choice([20, 101, 400, 4301, 6000, 6000])
    huge = rng.choice(["", "-"]) + "9" * digits + rng.choice(["", ".5", "e9999", "s", "MHz"])
    if not numbers:
        return data + f"\nx: {huge}\n".encode()
    match = rng.choice(numbers)
    return data[: match.start()] + huge.encode() + data[match.end() :]


def extreme_date(data: bytes, rng: random.Random) -> bytes:
    dates = list(re.finditer(rb"\d{4}-\d{2}-\d{2}", data))
    if not dates:
        return token(data, rng)
    match = rng.choice(dates)
    extreme = rng.choice(DATES[:2]) if rng.random() < 0.7 else rng.choice(DATES)  # the ends of time
    return data[: match.start()] + extreme.encode() + data[match.end() :]


def deep_nesting(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([10, 33, 200, 3000])
    if rng.random() < 0.5:
        nested = b"[" * depth + b"1" + b"]" * depth
    else:
        nested = b"{a: " * depth + b"1" + b"}" * depth
    lines = data.splitlines(keepends=True)
    values = [i for i, line in enumerate(lines) if re.search(rb": \S", line)]
    if not values:
        return data + b"\nx: " + nested + b"\n"
    at = rng.choice(values)
    key = lines[at].split(b": ", 1)[0]
    lines[at] = key + b": " + nested + b"\n"
    return b"".join(lines)


def aliases(data: bytes, rng: random.Random) -> bytes:
    levels = rng.randint(2, 9)
    bomb = b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n".encode() for n in range(1, levels)
    )
    return bomb + data if rng.random() < 0.5 else data + b"\n" + bomb


def non_utf8(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(3)
    if choice == 0:
        at = _at(data, rng)
        return data[:at] + rng.choice([b"\xff", b"\xc3", b"\xe0\x80", b"\xfe\xff", b"\x00"]) + data[at:]
    text = data.decode("utf-8", errors="replace")
    if choice == 1:
        return text.encode("utf-16")
    return text.encode("cp1258", errors="replace")


def rule_parts(data: bytes, rng: random.Random) -> bytes:
    rules = list(re.finditer(rb"FREQ=[^\n}]*", data))
    parts = [t for t in TOKENS if t.startswith(";")]
    if not rules:
        return token(data, rng)
    match = rng.choice(rules)
    return data[: match.end()] + rng.choice(parts).encode() + data[match.end() :]


MUTATIONS: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    flip, truncate, duplicate_lines, drop_line, reindent, token, token, huge_number, extreme_date,
    deep_nesting, aliases, non_utf8, rule_parts, rule_parts,
)  # fmt: skip


def case(seed: int, index: int, sources: list[Seed]) -> tuple[Seed, list[str], bytes]:
    """Case ``index`` of ``seed``: the source file, the mutations applied, and the bytes.

    Files that read as they are (the others show mistakes on purpose) are chosen three times as
    often, so that more mutations reach the checks behind the first error.
    """
    rng = random.Random(f"{seed}:{index}")
    source = rng.choices(sources, weights=[3 if s.good else 1 for s in sources])[0]
    data = source.data
    applied = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        mutation = rng.choice(MUTATIONS)
        data = mutation(data, rng)
        applied.append(mutation.__name__)
    return source, applied, data


# -- reading ----------------------------------------------------------------------------------------


def prepare(directory: Path) -> None:
    """Audio names the seeds use, as a FIFO, a directory and a real file, for the audio check."""
    os.mkfifo(directory / "ban-tin-sang.mp3")
    (directory / "tiem-chung.mp3").mkdir()
    (directory / "bao-so-3.mp3").write_bytes(b"ID3 demo")


def read_case(kind: str, data: bytes, directory: Path) -> tuple[bool, str | None]:
    """Read one case as the agent does: (did the reader accept it?, what went wrong or None).

    A schedule that reads is then checked for audio, which refuses it: its first audio is a FIFO.
    """
    path = directory / ("agent.yaml" if kind == "config" else "schedule.yaml")
    path.write_bytes(data)
    accepted = False
    try:
        if kind == "config":
            load_config(path)
        else:
            read_schedule_file(path, TZ, ZONES)
            accepted = True
            check_audio(path, TZ, ZONES)
        accepted = True
    except (ConfigError, ScheduleError) as error:
        return accepted, _misplaced(error, path)
    except Exception as exc:  # what the fuzzer is for: any other failure is a crash
        return accepted, f"{type(exc).__name__}: {str(exc)[:300]}"
    return accepted, None


def _misplaced(error: ConfigError | ScheduleError, path: Path) -> str | None:
    for problem in error.problems:
        text = str(problem)
        if INTERNAL_FAILURE in text or not text.startswith(str(path)):
            return f"{type(error).__name__} not placed in the file: {text[:300]}"
    return None


def run(cases: int, seed: int = 0) -> dict[str, Any]:
    """Read ``cases`` mutated files; the figures for docs/BENCHMARKS.md and the crashes."""
    sources = seeds()
    crashes: list[str] = []
    slowest = (0.0, -1)
    read = 0
    with tempfile.TemporaryDirectory(prefix="loa-fuzz-") as root:
        directory = Path(root)
        prepare(directory)
        started = time.perf_counter()
        for index in range(cases):
            source, applied, data = case(seed, index, sources)
            begun = time.perf_counter()
            accepted, failure = read_case(source.kind, data, directory)
            slowest = max(slowest, (time.perf_counter() - begun, index))
            read += accepted
            if failure is not None:
                crashes.append(f"case {index} (seed {seed}, {source.name}, {'+'.join(applied)}): {failure}")
        elapsed = time.perf_counter() - started
    return {
        "cases": cases,
        "seed": seed,
        "sources": len(sources),
        "cases_per_s": round(cases / elapsed, 1),
        "read_pct": round(100 * read / max(cases, 1), 1),  # the rest were refused, as they should be
        "slowest_case_ms": round(slowest[0] * 1000, 1),
        "slowest_case": slowest[1],
        "crashes": len(crashes),
        "first_crashes": crashes[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_inputs", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20_000, help="how many mutated files (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which sequence of cases (%(default)s)")
    parser.add_argument("--show", type=int, metavar="N", help="print case N of the seed and exit")
    args = parser.parse_args(argv)
    if args.show is not None:
        source, applied, data = case(args.seed, args.show, seeds())
        print(f"# {source.kind} from {source.name}, mutated by {'+'.join(applied)}", file=sys.stderr)
        sys.stdout.buffer.write(data)
        return 0
    result = run(args.cases, args.seed)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
