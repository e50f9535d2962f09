"""A stalled libVLC: how soon is it noticed, and how soon does an emergency play past it?

    .venv/bin/python -m bench.stall_bench [--trials 8]

Real libVLC (``--aout=afile``) writing into a FIFO that is open for reading and never read (as in
``tests/test_player_stall.py``): once the pipe is full, libVLC's audio output blocks, as a sound
card that stopped taking samples would.  Each trial uses a fresh player with the default limits.

* detection: from the instant the pipe is full (polled every 5 ms: the output blocks from then
  on) to the player's ``error`` event for the stalled playback;
* emergency start: with libVLC hung in ``stop()`` (joining an input thread blocked on the
  output), from ``play()`` of the emergency file to its ``playing`` event, played by a fresh
  libVLC instance into a plain file.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import struct
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

from drivers.playback_watch import StallLimits
from drivers.player import PlayerEvent
from drivers.vlc_player import VlcPlayer
from drivers.wav_samples import tone, write_wav

F_GETPIPE_SZ = 1032


class _Log:
    def __init__(self) -> None:
        self.events: list[PlayerEvent] = []

    def __call__(self, event: PlayerEvent) -> None:
        self.events.append(event)

    def wait(self, token: str, kinds: set[str], timeout: float = 20.0) -> PlayerEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event.token == token and event.kind in kinds:
                    return event
            time.sleep(0.002)
        raise RuntimeError(f"no {kinds} for {token} within {timeout} s: {self.events}")


def _queued(reader: int) -> int:
    raw = fcntl.ioctl(reader, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def _trial(directory: Path, emergency: bool) -> float:
    out = directory / "out.wav"
    out.unlink(missing_ok=True)
    log = _Log()
    player = VlcPlayer(["--aout=afile", f"--audiofile-file={out}"], log, limits=StallLimits())
    player.start()
    fifo = directory / "blocked.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.replace(fifo, out)
    try:
        capacity = fcntl.fcntl(reader, F_GETPIPE_SZ)
        player.play("long", directory / "long.wav", 100)
        log.wait("long", {"playing"})
        while _queued(reader) < capacity:
            time.sleep(0.005)
        blocked_at = time.monotonic()
        if not emergency:
            return log.wait("long", {"error"}).monotonic - blocked_at
        player.stop()  # hangs inside libVLC
        out.unlink()  # the fresh instance writes a plain file; the hung one keeps the FIFO
        asked = time.monotonic()
        player.play("emergency", directory / "alert.wav", 100)
        return log.wait("emergency", {"playing"}).monotonic - asked
    finally:
        os.close(reader)  # unblocks the abandoned instance, which then releases libVLC
        player.close()


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered) * 1000),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1000),
        "max": round(ordered[-1] * 1000),
    }


def run(trials: int = 8) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loa-stall-bench-") as name:
        directory = Path(name)
        write_wav(directory / "long.wav", tone(440, 60.0, 44100), 44100)
        write_wav(directory / "alert.wav", tone(880, 1.0, 44100), 44100)
        detection = [_trial(directory, emergency=False) for _ in range(trials)]
        starts = [_trial(directory, emergency=True) for _ in range(trials)]
    limits = StallLimits()
    return {
        "trials": trials,
        "stall_timeout_s": limits.stall_timeout,
        "detection_ms": _spread(detection),
        "emergency_start_ms": _spread(starts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stall_bench")
    parser.add_argument("--trials", type=int, default=8)
    print(json.dumps(run(parser.parse_args().trials), indent=2))


if __name__ == "__main__":
    main()
