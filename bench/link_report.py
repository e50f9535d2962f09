"""Docs/BENCHMARKS.md's section "The central link" from one run of :func:`bench.link_bench.run`."""

from __future__ import annotations

import os
from typing import Any

from bench import scale_bench
from bench.link_bench import (
    COMMAND_TARGET_MS,
    IDLE_RSS_TARGET_MB,
    SPOOL_TARGET_S,
)

TITLE = "## The central link (issue 8)"


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "**NOT met**"


def _row(label: str, spread: dict[str, float], target: str = "") -> str:
    cells = " | ".join(f"{spread[name]} ms" for name in ("p50", "p90", "p99", "max"))
    return f"| {label} | {cells} | {target} |"


def _loads(result: dict[str, Any], *names: str) -> str:
    return "; ".join(
        f"{name} {result['load'][name][0]} → {result['load'][name][1]}"
        for name in names
        if name in result["load"]
    )


def render(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            _render_head(result),
            _render_command(result["command"]),
            _render_spool(result),
            _render_idle(result),
        ]
    )


def _render_head(result: dict[str, Any]) -> str:
    return f"""{TITLE}

Measured {result["measured"]} on {scale_bench.machine()}.
`bench/link_bench.py`: a real Mosquitto on a free loopback port (started as `tests/mqtt_broker.py`
does, persistence off), the real agent (`agent.daemon`) with gpiozero's MockFactory pins, and a
paho client standing in for the central server.  Reproduce this section alone with
`.venv/bin/python -m bench.run_all --only link` (about {_minutes(result)} minutes; it rewrites this
section only); one part alone, printed as JSON: `.venv/bin/python -m bench.link_bench --only
command` (or `spool`, `idle`); the 10,000-item manifest is measured in its own section above
("A 10,000-item manifest").  The machine has {os.cpu_count()} cores shared with other
work; load average (1 min) before → after each part: {_loads(result, *result["load"])}.
"""


def _render_command(command: dict[str, Any]) -> str:
    preroll = command["preroll_ms"]
    met = _verdict(command["playing_ms"]["p99"], COMMAND_TARGET_MS + preroll)
    target = f"≤ {COMMAND_TARGET_MS} ms + pre-roll: {met}"
    over = (
        f"≤ {COMMAND_TARGET_MS} ms: {_verdict(command['playing_over_preroll_ms']['p99'], COMMAND_TARGET_MS)}"
    )
    return f"""### A signed command to relays closed and audio playing

{command["commands"]} signed `play_now` commands (EdDSA, `protocol.commands.sign_command`, signed
beforehand as the central server would) for a cached 0.3 s beep, each published at QoS 1 to the
box's `cmd` topic once the previous one has ended and its relays have opened again, so that each
closes relays from cold.  The daemon runs libVLC writing a WAV (`--aout=afile`) with a relay
pre-roll of {preroll} ms (`gpio.preroll`; the default is 2 s): audio starts that long after the
relays close, so the link's own share is the "minus the pre-roll" row.  Times from just before
`publish()`: the last relay closed (the relays' switch history, monotonic clock), the player's
"playing" (the play log's actual start, libVLC's event, kept to the millisecond) and the `done` ack
arriving back at the subscriber.

| from publish() of a signed play_now to | p50 | p90 | p99 | max | target (p99) |
|---|---|---|---|---|---|
{_row("relays closed (both zones)", command["relays_closed_ms"])}
{_row("audio playing", command["playing_ms"], target)}
{_row(f"audio playing, minus the {preroll} ms pre-roll", command["playing_over_preroll_ms"], over)}
{_row("the `done` ack at the central side", command["done_ack_ms"])}

Between the command and the relays: the broker's hop, the signature and claims checked, the jti
journalled in the store (a synchronous SQLite write), the cached file's sha256 checked, the
command handed to the main loop.  Between the relays and "playing": the pre-roll and libVLC's
start (see "Start accuracy" above).
"""


def _render_spool(result: dict[str, Any]) -> str:
    after, before = result["spool"], result.get("spool_before")
    rows = [
        ("broker started → agent online (its reconnect back-off)", "reconnect_s", "s"),
        ("agent online → every record received", "delivery_s", "s"),
        ("records per second", "records_per_s", ""),
        ("the daemon's CPU time, broker start → last record", "daemon_cpu_s", "s"),
        ("records received (distinct seq)", "received", ""),
        ("records received more than once", "repeated", ""),
    ]
    head = "| measure | before | after |\n|---|---|---|" if before else "| measure | value |\n|---|---|"
    lines = []
    for label, key, unit in rows:
        cells = [f"{before[key]} {unit}".strip()] if before else []
        lines.append(f"| {label} | " + " | ".join([*cells, f"{after[key]} {unit}".strip()]) + " |")
    in_time = _verdict(after["delivery_s"], SPOOL_TARGET_S)
    once = "met" if after["received"] == after["records"] and not after["repeated"] else "**NOT met**"
    was = (
        f" Before: commit `{result['before_rev']}` (this issue's base), measured in the same run."
        if before
        else ""
    )
    return f"""### {after["records"]:,} spooled play-log records delivered after reconnect

The store's play log is filled with {after["records"]:,} completed rows (`Store.record_play`, one
synchronous write each, {after["fill_s"]} s) and the daemon (its own process, null player) starts
with the broker down; after 5 s offline the broker starts, a subscriber subscribes to
`loa/v1/<device>/#` at QoS 1, and the agent reconnects.  Measured on the subscriber's clock, from
the agent's `online` status to the last of the {after["records"]:,} seqs.{was}

{head}
{chr(10).join(lines)}

Target: every record within {SPOOL_TARGET_S:g} s of reconnecting: {in_time}; each exactly once: {once}.
The link keeps 100 records in flight per stream; each broker acknowledgement is an event for the
main loop.  Before, each acknowledgement made a whole pass of the loop, which read and built the
next 100 rows to send one, and counted every waiting record for the status board.  Now events
that queue up during a pass share the next one (up to 100), a pass reads only the rows it can
send, and the spool depth shown by `loa status` is counted at most once a second.
"""


def _render_idle(result: dict[str, Any]) -> str:
    lines = []
    for key, when in (("idle_before", f"before (`{result.get('before_rev')}`)"), ("idle", "after")):
        if key not in result:
            continue
        for name, label in (("no_link", "no `central:`"), ("link_up", "link up")):
            m = result[key][name]
            target = (
                f"≤ {IDLE_RSS_TARGET_MB:g} MB: {_verdict(m['rss_peak_mb'], IDLE_RSS_TARGET_MB)}"
                if (key == "idle" and name == "link_up")
                else ""
            )
            lines.append(
                f"| {when}, {label} | {m['rss_peak_mb']} MB | {m['rss_mean_mb']} MB "
                f"| {m['cpu_percent_of_one_core']} % | {target} |"
            )
    seconds = result["idle"]["link_up"]["seconds"]
    return f"""### The idle daemon with the link up

`loa-agent run` (libVLC loaded and warmed up, nothing due) sampled from /proc every second for
{seconds} s after start-up, without a `central:` section and with the link up (connected to the
broker, its retained state published, nothing to send).  Issue 2 measured the idle daemon at
52.6 MB and 0.133 % (before the player's warm-up) and 61.1 MB and 0.117 % ("Idle footprint" above,
18:15 UTC, with numpy loaded).

| daemon | RSS peak | RSS mean | CPU (share of one core) | target |
|---|---|---|---|---|
{chr(10).join(lines)}

The link adds paho-mqtt, PyJWT and the `cryptography` bindings (Ed25519) and two threads
(about 11-12 MB).  requests, which the audio cache and the manifest fetch use, is not loaded by
this daemon yet: importing it adds about 4.6 MB more, past the 60 MB target, whereas the
standard library's `urllib.request` and `http.client` are loaded already (by PyJWT).  The
daemon used to load numpy, which sqlite-utils imports whenever it is installed only to convert
numpy values; the store now imports sqlite-utils without it (about 11 MB less).  A box relaying FM
still loads numpy for its receiver.
"""


def _minutes(result: dict[str, Any]) -> int:
    idle = result["idle"]["link_up"]["seconds"] + 5
    runs = 2 if "idle_before" in result else 1
    return max(1, round((2 * idle * runs + 60 * runs + result["command"]["commands"] * 0.8 + 40) / 60))
