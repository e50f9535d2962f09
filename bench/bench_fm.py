"""FM receiver benchmark: demodulation real-time factor and CPU share while relaying live.

``run()`` returns the numbers; ``python -m bench.bench_fm`` prints them as markdown.
The input is 1.024 MS/s cu8 from the fake dongle (a station 250 kHz above the tuned centre, a
neighbour and noise), as ``rtl_sdr`` would record it.  The process is pinned to one core.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fm_receiver.dsp import FmDemodulator, iq_from_bytes
from fm_receiver.fake_rtlsdr import FakeRtlSdr
from fm_receiver.iq_file import IqFileSource
from fm_receiver.quality import CarrierDetector
from fm_receiver.receiver import FmReceiver

RATE = 1_024_000
STATION_HZ = 99_100_000.0
OFFSET_HZ = 250_000.0
BLOCK = 262_144  # samples per read, as rtl_sdr's default buffer


def _recording(seconds: float) -> bytes:
    dongle = FakeRtlSdr({STATION_HZ: -12.0, STATION_HZ + 400_000: -15.0}, noise_dbfs=-40.0, realtime=False)
    dongle.sample_rate = RATE
    dongle.center_freq = STATION_HZ - OFFSET_HZ
    return dongle.read_bytes(2 * int(RATE * seconds))


def _pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"core {core}"


def realtime_factor(raw: bytes, runs: int = 5) -> float:
    """Seconds of IQ demodulated per second of CPU wall time (cu8 conversion included), median of runs."""
    seconds = len(raw) / 2 / RATE
    timings = []
    for _ in range(runs):
        demod = FmDemodulator(RATE, OFFSET_HZ)
        started = time.perf_counter()
        for start in range(0, len(raw), 2 * BLOCK):
            demod.process(iq_from_bytes(raw[start : start + 2 * BLOCK], "cu8"))
            demod.meter.take()
        timings.append(time.perf_counter() - started)
    return seconds / statistics.median(timings)


def live_cpu_share(raw: bytes, seconds: float = 10.0) -> dict[str, float]:
    """Relay a paced (real-time) recording for ``seconds``: process CPU time / wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "live.cu8"
        path.write_bytes(raw)
        source = IqFileSource(
            path, "cu8", RATE, OFFSET_HZ, loop=True, realtime=True, block_samples=BLOCK // 4
        )
        receiver = FmReceiver(source, FmDemodulator(RATE, OFFSET_HZ), CarrierDetector(), lambda event: None)
        received = [0]
        stop = threading.Event()
        player = threading.Thread(target=_play, args=(receiver, received, stop), daemon=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        receiver.start()
        player.start()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        stop.set()
        receiver.stop()
        player.join(3.0)
    return {"cpu_share": cpu / wall, "audio_s": received[0] / 2 / 48_000, "wall_s": wall}


def _play(receiver: FmReceiver, received: list[int], stop: threading.Event) -> None:
    """What the player does: take a stream, read until it ends, take the next."""
    while not stop.is_set():
        stream = receiver.open_stream()
        while chunk := stream.read(9_600):
            received[0] += len(chunk)


def run() -> dict[str, Any]:
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pinned = _pin_to_one_core()
    try:
        raw = _recording(4.0)
        rtf = realtime_factor(raw)
        live = live_cpu_share(raw)
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)  # other benchmarks in the same process get every core back
    return {
        "input": "1.024 MS/s cu8, station at +250 kHz, neighbour, noise",
        "pinned": pinned,
        "realtime_factor": round(rtf, 1),
        "realtime_target": 20.0,
        "live_cpu_share_pct": round(100 * live["cpu_share"], 1),
        "live_audio_s": round(live["audio_s"], 1),
        "live_wall_s": round(live["wall_s"], 1),
    }


def _markdown(result: dict[str, Any]) -> str:
    verdict = "met" if result["realtime_factor"] >= result["realtime_target"] else "NOT met"
    return "\n".join(
        [
            "### FM receiver",
            "",
            f"Input: {result['input']}; process pinned to {result['pinned']}.",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| demodulation real-time factor (median of 5) | {result['realtime_factor']}x | "
            f">= {result['realtime_target']:.0f}x ({verdict}) |",
            f"| CPU share relaying live ({result['live_wall_s']} s paced) | {result['live_cpu_share_pct']} % "
            f"of one core | - |",
            f"| audio relayed in that time | {result['live_audio_s']} s | - |",
        ]
    )


if __name__ == "__main__":
    print(_markdown(run()))
