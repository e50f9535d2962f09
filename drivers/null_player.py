"""A player without sound, for ``audio.backend: null`` and for the agent's own tests.

It keeps the timing of a real player: a WAV file is announced ``playing`` at once and ``ended``
after its duration, measured on the monotonic clock; a stream plays until it ends.  Anything that
is not a readable PCM WAV is refused with an ``error`` event, as libVLC would refuse a corrupt file.
``played`` records every accepted request and ``prepared`` every preparation, so tests can see
what the agent asked for.

:meth:`NullPlayer.stall_next` fakes the libVLC player's stall supervision for the agent's tests:
the next file is announced ``playing``, then after ``stall_timeout`` ends with a fault ``error``
worded as libVLC's, and the player stays unhealthy until :meth:`NullPlayer.recover`.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from pathlib import Path
from typing import NamedTuple

from drivers.playback_watch import clock
from drivers.player import (
    EventSink,
    PcmStream,
    Playback,
    PlaybackLedger,
    check_repeat,
    check_volume,
    unreadable,
)
from drivers.wav import wav_duration

logger = logging.getLogger(__name__)

_STREAM_CHUNK = 4096


class PlayedItem(NamedTuple):
    """One accepted request: ``path`` is None for a stream."""

    token: str
    path: Path | None
    volume: int
    started: float
    prepared: bool = False  # the file was prepared for this token before its play
    repeat: int = 1  # times the file plays back to back


class NullPlayer:
    """Plays nothing, on time."""

    name = "null"
    start_latency: float | None = 0.0  # "playing" is posted within play() itself

    def __init__(self, sink: EventSink, stall_timeout: float = 3.0) -> None:
        self._ledger = PlaybackLedger(sink)
        self._lock = threading.Condition()
        self._deadline: tuple[Playback, float, str] | None = None  # and the stall reason, if any
        self._stall_timeout = stall_timeout
        self._stall_next = False
        self._fault: str | None = None
        self._stream: PcmStream | None = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.played: list[PlayedItem] = []
        self.prepared: list[tuple[str, Path]] = []
        self.staged: tuple[str, Path] | None = None  # prepared and not yet played

    def start(self) -> None:
        self._stop.clear()
        self._timer = threading.Thread(target=self._run_timer, name="null-player", daemon=True)
        self._timer.start()
        logger.info("null player started: playback is silent")

    def prepare(self, token: str, path: Path) -> None:
        self.prepared.append((token, path))
        self.staged = (token, path)

    def play(self, token: str, path: Path, volume: int, repeat: int = 1) -> None:
        check_volume(volume)
        check_repeat(repeat)
        playback = self._ledger.begin(token, str(path))
        self._end_stream()
        prepared = self.staged == (token, path)
        if prepared:
            self.staged = None
        problem = _unplayable(path)
        if problem:
            self._ledger.finish(playback, "error", problem)
            return
        started = time.monotonic()
        self.played.append(PlayedItem(token, path, volume, started, prepared, repeat))
        self._ledger.playing(playback)
        duration = wav_duration(path) * repeat
        with self._lock:
            if self._stall_next:
                self._stall_next = False
                stall = self._stall_timeout
                why = f"player stalled: no progress for {stall:.1f} s at 00:00 of {clock(duration)}"
                self._deadline = (playback, started + stall, why)
            else:
                self._deadline = (playback, started + duration, "")
            self._lock.notify_all()

    def play_stream(self, token: str, stream: PcmStream, volume: int) -> None:
        check_volume(volume)
        playback = self._ledger.begin(token, f"stream {stream.sample_rate} Hz x{stream.channels}")
        self._end_stream()
        self.played.append(PlayedItem(token, None, volume, time.monotonic()))
        self._stream = stream
        reader = threading.Thread(
            target=self._drain, args=(playback, stream), name="null-player-stream", daemon=True
        )
        reader.start()

    def stop(self) -> None:
        # Report first: closing the stream makes its reader see the end and claim "ended".
        current = self._ledger.current
        if current is not None:
            self._ledger.finish(current, "stopped", "stop requested")
        self._end_stream()

    def close(self) -> None:
        self.stop()
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._timer is not None:
            self._timer.join(timeout=2.0)
            self._timer = None

    def healthy(self) -> bool:
        return self.fault() is None

    def fault(self) -> str | None:
        if self._timer is None or not self._timer.is_alive():
            return "the null player is not started"
        return self._fault

    def stall_next(self) -> None:
        """Make the next file playback stall (see the module's docstring)."""
        with self._lock:
            self._stall_next = True

    def recover(self) -> None:
        """End the fault left by a stall, as the libVLC player's restart does."""
        self._fault = None

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _drain(self, playback: Playback, stream: PcmStream) -> None:
        self._ledger.playing(playback)
        try:
            while stream.read(_STREAM_CHUNK):
                pass
        except Exception as exc:  # the stream's failure ends this playback, not the player
            self._ledger.finish(playback, "error", f"stream failed: {exc}")
            return
        finally:
            stream.close()
        self._ledger.finish(playback, "ended", "end of stream")

    def _run_timer(self) -> None:
        with self._lock:
            while not self._stop.is_set():
                due = self._deadline
                if due is None:
                    self._lock.wait()
                    continue
                remaining = due[1] - time.monotonic()
                if remaining > 0:
                    self._lock.wait(timeout=remaining)
                    continue
                self._deadline = None
                playback, _, stalled = due
                if not stalled:
                    self._ledger.finish(playback, "ended", "end of file")
                    continue
                self._fault = f"{stalled}; the player is being restarted"
                self._ledger.finish(playback, "error", f"{stalled}; player restarted", fault=True)


def _unplayable(path: Path) -> str:
    """Why ``path`` cannot be played, or "" if it is a readable PCM WAV."""
    problem = unreadable(path)
    if problem:
        return problem
    try:
        wav_duration(path)
    except (wave.Error, EOFError):
        return f"null player plays WAV only: {path} is not a readable PCM WAV file"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return ""
