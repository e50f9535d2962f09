"""Shared helpers for the player tests: tone files and streams, an event recorder, WAV checks."""

from __future__ import annotations

import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from drivers.player import PlayerEvent
from drivers.wav_samples import to_pcm, tone, write_wav
from foundation.errors import PlayerError

RATE = 44100


def libvlc_missing() -> str:
    """Why libVLC cannot be used here, or "" if it can (then its tests must run)."""
    from drivers.vlc_player import BASE_ARGS, load_libvlc

    try:
        vlc = load_libvlc()
    except PlayerError as exc:
        return str(exc)
    instance = vlc.Instance(list(BASE_ARGS))
    if instance is None:
        return "libVLC has no plugins: apt install vlc-plugin-base"
    instance.release()
    return ""


def tone_file(directory: Path, frequency: float, seconds: float, rate: int = RATE) -> Path:
    """A mono 16-bit WAV tone named after its frequency and length."""
    path = directory / f"tone-{frequency:g}Hz-{seconds:g}s.wav"
    if not path.exists():
        write_wav(path, tone(frequency, seconds, rate), rate)
    return path


def encoded_tone(directory: Path, frequency: float, seconds: float, kind: str) -> Path:
    """A tone as a real MP3 (``lame``, 128 kbit/s CBR) or Ogg Vorbis (``sox``) file, both installed
    by ``make test`` (Makefile APT_PACKAGES), as a province's bulletins come."""
    wav = tone_file(directory, frequency, seconds)
    path = wav.with_suffix(f".{kind}")
    if not path.exists():
        command = {
            "mp3": ["lame", "--quiet", "-b", "128", "--cbr", str(wav), str(path)],
            "ogg": ["sox", str(wav), "-C", "4", str(path)],
        }[kind]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return path


def garbage_file(directory: Path, name: str, size: int = 20000) -> Path:
    """Random bytes under an audio file name (seeded, so every run sees the same bytes)."""
    path = directory / name
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def wait_for_finished_wav(path: Path, timeout: float = 10.0) -> None:
    """Wait until libVLC's afile output has patched the WAV header, which it does on closing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= 44:
            with path.open("rb") as wav:
                header = wav.read(44)
            data_size = struct.unpack("<I", header[40:44])[0]
            if data_size > 0 and path.stat().st_size == 44 + data_size:
                return
        time.sleep(0.02)
    raise AssertionError(f"{path} was not finished within {timeout} s")


def wait_for_audio_written(path: Path, min_bytes: int, timeout: float = 10.0) -> None:
    """Wait until an output file holds at least ``min_bytes`` of audio after its header."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= 44 + min_bytes):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not reach {min_bytes} bytes of audio within {timeout} s")
        time.sleep(0.02)


class EventLog:
    """A thread-safe event sink that tests can wait on."""

    def __init__(self) -> None:
        self.events: list[PlayerEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: PlayerEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, token: str) -> list[PlayerEvent]:
        with self._changed:
            return [event for event in self.events if event.token == token]

    def kinds(self, token: str) -> list[str]:
        return [event.kind for event in self.of(token)]

    def wait_for(self, token: str, kind: str, timeout: float = 10.0) -> PlayerEvent:
        """The first ``kind`` event of ``token``, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.token == token and e.kind == kind]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {kind!r} for {token!r} within {timeout} s: {self.events}")
                self._changed.wait(remaining)

    def wait_final(self, token: str, timeout: float = 10.0) -> PlayerEvent:
        """The final (ended/stopped/error) event of ``token``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.token == token and e.kind != "playing"]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no final event for {token!r} within {timeout} s: {self.events}")
                self._changed.wait(remaining)


class ToneStream:
    """A PcmStream of a sine tone, optionally paced like a live source; ``seconds=None`` is endless."""

    def __init__(
        self, frequency: float, seconds: float | None, rate: int = 48000, paced: bool = False
    ) -> None:
        self.sample_rate = rate
        self.channels = 1
        self._frequency = frequency
        self._remaining = None if seconds is None else round(seconds * rate)
        self._position = 0
        self._paced = paced
        self._started = time.monotonic()
        self.closed = threading.Event()

    def read(self, max_bytes: int) -> bytes:
        frames = min(max_bytes // 2, 2400)
        if self._remaining is not None:
            frames = min(frames, self._remaining)
            self._remaining -= frames
        if frames == 0 or self.closed.is_set():
            return b""
        if self._paced:
            due = self._started + (self._position + frames) / self.sample_rate
            self.closed.wait(max(0.0, due - time.monotonic()))
        t = (self._position + np.arange(frames)) / self.sample_rate
        self._position += frames
        return to_pcm(0.5 * np.sin(2 * np.pi * self._frequency * t))

    def close(self) -> None:
        self.closed.set()


class StuckStream:
    """A PcmStream whose read blocks, ignoring close(), until the test releases it (a hung source)."""

    sample_rate = 48000
    channels = 1

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reading = threading.Event()

    def read(self, max_bytes: int) -> bytes:
        self.reading.set()
        self.release.wait(30.0)
        return b""

    def close(self) -> None:
        """Deliberately does nothing: this source does not honour close()."""
