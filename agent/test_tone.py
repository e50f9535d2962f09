"""The test tone a crew plays with ``loa test tone``: a sine WAV kept in the agent's storage.

It is made the first time a frequency and length is asked for (never at import), with the
standard library only (the daemon does not need numpy for it), and written as every file the agent
keeps is: a temporary file, fsync, rename, fsync of the directory, so a power cut leaves either
no tone or a whole one.  Whole seconds of a whole-hertz tone hold whole cycles, so one second is
computed and repeated; short fades at both ends keep the speakers from clicking.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from array import array
from pathlib import Path

from drivers.wav import wav_header

RATE = 48_000
AMPLITUDE = 0.5  # -6 dBFS: loud enough to hear at the pole, far from clipping the amplifier
FADE = RATE // 50  # 20 ms
DEFAULT_FREQUENCY = 1000
DEFAULT_SECONDS = 5
FREQUENCIES = (100, 4000)  # what a horn loudspeaker reproduces
MAX_SECONDS = 60
DIRECTORY = "test-tones"  # under storage.dir


def tone_path(storage: Path, frequency: int, seconds: int) -> Path:
    return storage / DIRECTORY / f"tone-{frequency}Hz-{seconds}s.wav"


def ensure_tone(storage: Path, frequency: int, seconds: int) -> Path:
    """The tone's file under ``storage``, written now if it is not there yet; OSError if it cannot be."""
    path = tone_path(storage, frequency, seconds)
    if path.is_file() and path.stat().st_size == 44 + seconds * RATE * 2:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # One partial per thread: two crews asking at once each write a whole file, the last rename wins.
    partial = path.with_name(f".{path.name}.{threading.get_ident()}.partial")
    with partial.open("wb") as out:
        out.write(wav_header(RATE, 1, seconds * RATE * 2))
        second = _one_second(frequency)
        for index in range(seconds):
            out.write(_faded(second, first=index == 0, last=index == seconds - 1))
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def _one_second(frequency: int) -> array[int]:
    peak = AMPLITUDE * 32767
    step = 2 * math.pi * frequency / RATE
    return array("h", (round(peak * math.sin(step * n)) for n in range(RATE)))


def _faded(second: array[int], *, first: bool, last: bool) -> bytes:
    samples = array("h", second)
    for n in range(FADE):
        gain = n / FADE
        if first:
            samples[n] = round(samples[n] * gain)
        if last:
            samples[RATE - 1 - n] = round(samples[RATE - 1 - n] * gain)
    if struct.pack("=h", 1) != struct.pack("<h", 1):  # WAV is little-endian
        samples.byteswap()
    return samples.tobytes()
