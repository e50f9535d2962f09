"""Run every benchmark once and write docs/BENCHMARKS.md (``make bench``).

Each figure comes from one run on this machine: percentiles and ratios, never single timings.

    python -m bench.run_all               every section
    python -m bench.run_all --only fuzz   only "Hostile inputs", rewritten in place in the file
    python -m bench.run_all --only stall  only "A stalled player" (also: --only kills, --only manifest,
                                          --only spool, --only central, --only retention)
    python -m bench.run_all --only link   only "The central link" (issue 8)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    agent_bench,
    bench_fm,
    central_bench,
    central_report,
    fuzz_inputs,
    kill_bench,
    link_bench,
    link_report,
    manifest_bench,
    retention_bench,
    scale_bench,
    spool_bench,
    stall_bench,
)

OUT = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
STARTS = 120  # p99 of at least 100 starts


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {platform.machine()}, Python {platform.python_version()}, {platform.platform()}"


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "**NOT met**"


START_TARGET_MS = 10.0


def _ms(spread: dict[str, float], *names: str) -> str:
    return " | ".join(f"{spread[name]} ms" for name in names)


def render_start_accuracy(latency: dict[str, Any], accuracy: dict[str, Any]) -> str:
    signed, absolute = accuracy["signed"], accuracy["absolute"]
    load = accuracy["load_average"]
    return f"""## Start accuracy (issue 2)

The agent prepares each item when its relays close (pre-roll) and calls `play()` a *lead* before
the scheduled instant, so that libVLC's "playing" event, the play log's actual start, lands on it.
The lead is the median of the last 15 play()-to-"playing" latencies the agent measured, seeded by
the player's silent warm-up at start (`agent/start_timing.py`).  Both tables come from the same
run of `bench/agent_bench.py`.

libVLC alone: python-vlc with the same arguments (`--aout=afile`), the media set on the player
beforehand as `prepare` does, {latency["plays"]} plays of the bench's 0.3 s beep; time from
`play()` to the event, on the monotonic clock.

| libVLC latency | p50 | p90 | p99 | max |
|---|---|---|---|---|
| play() → MediaPlayerPlaying | {_ms(latency["playing"], "p50", "p90", "p99", "max")} |
| play() → playing with an audio stream (the agent's "playing") \
| {_ms(latency["playing_with_audio"], "p50", "p90", "p99", "max")} |

The agent: the real daemon (libVLC writing to a WAV through `--aout=afile`, gpiozero mock pins,
relay pre-roll 500 ms) plays {accuracy["scheduled"]} beeps scheduled {accuracy["spacing_s"]:g} s apart;
start error = actual start - scheduled start from the play log ({accuracy["starts"]} starts; negative
is early; the play log keeps milliseconds, truncated).  The warm-up measured
{accuracy["warm_up_latency_ms"]} ms; the lead at the end of the run was {accuracy["final_lead_ms"]} ms.
Load average (1 min) {load[0]} before and {load[1]} after the run, on {os.cpu_count()} cores.

| start error | p1 | p50 | p90 | p99 | max | mean | target p99 |
|---|---|---|---|---|---|---|---|
| signed | {_ms(signed, "p1", "p50", "p90", "p99", "max", "mean")} | |
| absolute | | {_ms(absolute, "p50", "p90", "p99", "max")} | \
| ≤ {START_TARGET_MS:g} ms: {verdict(absolute["p99"], START_TARGET_MS)} |

The agent's error is libVLC's latency minus the lead, so libVLC's own spread above (its p99 minus
its median) bounds what the lead can do; both move by a few milliseconds from run to run with the
machine's load.  Before start timing (the agent called `play()` at the scheduled instant, after a
synchronous play-log write) the previous version of this benchmark (50 starts, absolute error)
gave p50 5 ms, p99 15 ms, every start late.

Only the start accuracy: `python -m bench.agent_bench --starts 120 --idle 0` (about 3 minutes).
"""


def render(
    latency: dict[str, Any],
    accuracy: dict[str, Any],
    idle: dict[str, Any],
    relaying: dict[str, Any],
    fm: dict[str, Any],
    scale: dict[str, Any],
) -> str:
    fm_rows = "\n".join(f"| {k} | {v} |" for k, v in fm.items())
    return f"""# Benchmarks

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.
Reproduce with `make bench` (runs `python -m bench.run_all`, about 6 minutes, rewrites this file).

{render_start_accuracy(latency, accuracy)}
## Idle footprint (issue 2)

`loa-agent run` with libVLC loaded and nothing due, sampled from /proc every second for
{idle["seconds"]} s after start-up.

| RSS peak | RSS mean | CPU (share of one core) | targets |
|---|---|---|---|
| {idle["rss_peak_mb"]} MB | {idle["rss_mean_mb"]} MB | {idle["cpu_percent_of_one_core"]} % \
| ≤ 80 MB: {verdict(idle["rss_peak_mb"], 80)}; ≤ 1 %: {verdict(idle["cpu_percent_of_one_core"], 1)} |

The store imports sqlite-utils without numpy, which sqlite-utils would otherwise load (about
11 MB; see "The central link" below).  The player's silent warm-up at start loads libVLC's
demuxer, decoder and audio output, which the first playback would load anyway (about 4 MB of
RSS when start timing added it: 58 → 62 MB).

With `fm.backend` set the daemon also loads scipy and the FM receiver. The same daemon
relaying FM live (a 1.024 MS/s recording paced in real time, demodulated and played through libVLC),
sampled for {relaying["seconds"]} s:

| RSS peak | RSS mean | CPU (share of one core) |
|---|---|---|
| {relaying["rss_peak_mb"]} MB | {relaying["rss_mean_mb"]} MB | {relaying["cpu_percent_of_one_core"]} % |

## FM demodulation (issue 3)

`bench/bench_fm.py`: 1.024 MS/s cu8 input demodulated to 48 kHz audio on one core, and the CPU
share of live relaying from a real-time-paced IQ source. Target: real-time factor ≥ 20.

| measure | value |
|---|---|
{fm_rows}

A Raspberry Pi 4 core is roughly 3-5 times slower than this machine's, so a real-time factor of
20 here leaves room to spare there.

{scale_bench.render(scale)}"""


KILL_CYCLES = 30
KILLS_HEADING = "## kill -9 cycles (issue 7)"


def render_kills(kills: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{outcome} {count}" for outcome, count in sorted(kills["outcomes"].items()))
    return f"""{KILLS_HEADING}

`bench/kill_bench.py`, measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (`python -m bench.run_all --only
kills` reruns this section alone): the real `loa-agent run` process (null player, mock pins) plays
an item every 2 s, one in four long enough for the next to wait behind it; it is killed with
SIGKILL at a random instant (0.3 to 4 s after its start) and started again at once,
{kills["cycles"]} times, then runs until every occurrence that fell due has an outcome. Target: no
occurrence that fell due without its row (lost), none left unfinished.

| cycles | occurrences due | lost | unfinished | outcomes |
|---|---|---|---|---|
| {kills["cycles"]} | {kills["due"]} | {kills["lost"]}: {verdict(kills["lost"], 0)} | {kills["unfinished"]} \
| {outcomes} |
"""


FUZZ_CASES = 20_000
FUZZ_HEADING = "## Hostile inputs (issue 7)"


def render_fuzz(fuzz: dict[str, Any]) -> str:
    return f"""{FUZZ_HEADING}

`bench/fuzz_inputs.py`, measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on one core (under 2 minutes;
`python -m bench.run_all --only fuzz` reruns this section alone): {fuzz["cases"]} config and schedule
files, each one of {fuzz["sources"]} real files (`config.example.yaml`, `agent.yaml`, the YAML files of
`docs/*.md`, a schedule using every key) mutated one to four times: byte flips, truncation,
duplicated lines, YAML-special tokens, numbers of up to 6000 digits, dates in the years 1 and 9999,
nesting up to 3000 deep, alias bombs, recurrence parts, non-UTF-8 bytes. Each is read by
`load_config`, or by `read_schedule_file` and check-config's audio check. A crash is anything but a
result or a ConfigError / ScheduleError whose problems are placed in the file. Target: no crash;
the readers' own bounds, not a timeout, keep every case short.

| cases | seed | cases per second | read (the rest refused) | slowest case | crashes |
|---|---|---|---|---|---|
| {fuzz["cases"]} | {fuzz["seed"]} | {fuzz["cases_per_s"]} | {fuzz["read_pct"]} % \
| {fuzz["slowest_case_ms"]} ms (case {fuzz["slowest_case"]}) \
| {fuzz["crashes"]}: {verdict(fuzz["crashes"], 0)} |
"""


STALL_TRIALS = 8
STALL_HEADING = "## A stalled player (issue 7)"
DETECT_TARGET_MS = 5000
EMERGENCY_TARGET_MS = 1000


def render_stall(stall: dict[str, Any]) -> str:
    detect, start = stall["detection_ms"], stall["emergency_start_ms"]
    return f"""{STALL_HEADING}

`bench/stall_bench.py`, measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (`python -m bench.run_all --only
stall` reruns this section alone): real libVLC whose afile output writes into a FIFO that is open
and never read, so that its audio output blocks once the pipe is full, as a sound card that stopped
taking samples; {stall["trials"]} trials each, a fresh player with the default limits (stall timeout
{stall["stall_timeout_s"]:g} s, a play pre-empts a command busy for over 0.5 s). Detection: from the
pipe being full to the stalled playback's `error`. Emergency start: libVLC hung in `stop()`, from
`play()` of the emergency file to its `playing`, played by a fresh libVLC instance.

| measure | p50 | p90 | max | target |
|---|---|---|---|---|
| stall detection | {detect["p50"]} ms | {detect["p90"]} ms | {detect["max"]} ms \
| ≤ {DETECT_TARGET_MS} ms: {verdict(detect["max"], DETECT_TARGET_MS)} |
| emergency start with a hung player | {start["p50"]} ms | {start["p90"]} ms | {start["max"]} ms \
| ≤ {EMERGENCY_TARGET_MS} ms: {verdict(start["max"], EMERGENCY_TARGET_MS)} |

Detection is the stall timeout plus up to a probe period (0.25 s) after the output's last played
buffer, which comes shortly before the pipe is full; the emergency start is the 0.5 s pre-emption
bound plus a fresh instance's first start (libVLC loads its modules again in that instance).
"""


SPOOL_HEADING = "## The telemetry spool (issue 8)"
SPOOL_TARGET_MS = 50.0


def render_spool(spool: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {r['waiting']} | {r['p50_ms']} ms | {r['p99_ms']} ms"
        f" | {verdict(r['p99_ms'], SPOOL_TARGET_MS)} |"
        for name, r in spool["spools"].items()
    )
    return f"""{SPOOL_HEADING}

What one telemetry sample costs the main loop while the link is down: `Store.add_telemetry`, the
insert and the spool policy's thinning in one transaction (real SQLite file, WAL,
`synchronous=FULL`), on spools of three sizes (`bench/spool_bench.py`, measured
{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {spool["samples"]} samples each; `python -m bench.run_all
--only spool` reruns this section alone). Only the periods the new sample moved past a cutoff are
thinned, so the cost does not grow with the outage; the fsync of each commit is most of it (load
average {spool["load_average"]} at the end of the run). Target: p99 ≤ {SPOOL_TARGET_MS:g} ms, a small
part of the main loop's one-second heartbeat, once a minute.

| spool before the samples | samples waiting after | p50 | p99 | target |
|---|---|---|---|---|
{rows}
"""


def with_section(document: str, heading: str, section: str) -> str:
    """``document`` with the section under ``heading`` replaced by ``section`` (or added at the end)."""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: section + "\n", document, count=1).rstrip("\n") + "\n"
    return document.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description="write docs/BENCHMARKS.md")
    parser.add_argument(
        "--only",
        choices=["fuzz", "kills", "stall", "spool", "manifest", "link", "central", "retention"],
        help="run one section and rewrite it in place",
    )
    args = parser.parse_args(argv)
    if args.only == "central":
        central = central_bench.run()
        print(central)
        central_bench.write(central)
        return 0
    if args.only == "manifest":
        return manifest_bench.main([])
    if args.only == "retention":
        return retention_bench.main([])
    if args.only == "link":
        link = link_bench.run()
        OUT.write_text(
            with_section(OUT.read_text(encoding="utf-8"), link_report.TITLE, link_report.render(link))
        )
        print(f"rewrote {link_report.TITLE!r} in {OUT}")
        return 0
    if args.only == "spool":
        spool = spool_bench.run()
        print(spool)
        OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), SPOOL_HEADING, render_spool(spool)))
        return 0
    if args.only == "stall":
        stall = stall_bench.run(STALL_TRIALS)
        print(stall)
        OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), STALL_HEADING, render_stall(stall)))
        return 0
    if args.only == "kills":
        kills = kill_bench.run(KILL_CYCLES, seed=7)
        print(kills)
        OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), KILLS_HEADING, render_kills(kills)))
        return 1 if kills["lost"] or kills["unfinished"] else 0
    fuzz = fuzz_inputs.run(FUZZ_CASES)
    print(fuzz)
    if args.only == "fuzz":
        OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), FUZZ_HEADING, render_fuzz(fuzz)))
        print(f"rewrote {FUZZ_HEADING!r} in {OUT}")
        return 1 if fuzz["crashes"] else 0
    latency = agent_bench.libvlc_latency(STARTS)
    print(latency)
    accuracy = agent_bench.start_accuracy(STARTS)
    print(accuracy)
    idle = agent_bench.footprint(60.0)
    print(idle)
    relaying = agent_bench.footprint(30.0, relay_fm=True)
    print(relaying)
    fm = bench_fm.run()
    print(fm)
    scale = scale_bench.run(compare=scale_bench.BASE_REV if scale_bench.have(scale_bench.BASE_REV) else None)
    kills = kill_bench.run(KILL_CYCLES, seed=7)
    print(kills)
    stall = stall_bench.run(STALL_TRIALS)
    print(stall)
    spool = spool_bench.run()
    print(spool)
    document = render(latency, accuracy, idle, relaying, fm, scale) + "\n" + render_fuzz(fuzz)
    document += "\n" + render_kills(kills) + "\n" + render_stall(stall) + "\n" + render_spool(spool)
    manifest = manifest_bench.run()
    print(manifest)
    document += "\n" + manifest_bench.render(manifest)
    link = link_bench.run()
    document += "\n" + link_report.render(link)
    document += "\n" + central_report.render(central_bench.run())
    document += "\n" + retention_bench.render(retention_bench.run())
    OUT.write_text(document, encoding="utf-8")
    print(f"wrote {OUT}")
    return 1 if fuzz["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
