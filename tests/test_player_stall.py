"""A stalled libVLC, for real: its audio output blocked on a pipe that nobody reads.

libVLC's afile output writes to ``--audiofile-file``; when that path is a FIFO whose reader never
reads, the output thread blocks in ``fwrite`` once the pipe's 64 KiB are full (a fraction of a
second of audio).  libVLC's playing time goes on advancing (it is the input's clock), but the
output's played-buffer count stops, and ``stop()`` / ``set_media()`` hang until the pipe drains or
its reader goes away.  That is the stall the player supervises (``drivers/playback_watch.py``).

The FIFO replaces the output file after ``start()`` (the warm-up writes to a plain file), and a
plain file replaces the FIFO again once the test wants a fresh engine to be heard: afile opens
its path anew at every playback, while the abandoned engine keeps the FIFO it opened.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.null_player import NullPlayer
from drivers.playback_watch import Progress, StallLimits, clock, stall_reason
from drivers.player import PlayerEvent
from drivers.vlc_player import VlcPlayer
from drivers.wav_samples import dominant_frequency, read_wav
from tests.audio_fixtures import EventLog, ToneStream, libvlc_missing, tone_file, wait_for_finished_wav

LIBVLC_MISSING = libvlc_missing()


def vlc_only(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.vlc(pytest.mark.skipif(bool(LIBVLC_MISSING), reason=LIBVLC_MISSING)(test))


class BlockedOutput:
    """Turns libVLC's afile output path into a FIFO that is open for reading and never read."""

    def __init__(self, out: Path) -> None:
        self.out = out
        fifo = out.with_name("blocked.fifo")
        os.mkfifo(fifo)
        self._reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so afile's open does not block
        os.replace(fifo, out)

    def wait_full(self, timeout: float = 10.0) -> None:
        """Wait until libVLC has filled the pipe: its output is blocked from now on."""
        deadline = time.monotonic() + timeout
        while self.queued() < 60 * 1024:
            assert time.monotonic() < deadline, f"the pipe holds only {self.queued()} bytes"
            time.sleep(0.02)

    def queued(self) -> int:
        raw = fcntl.ioctl(self._reader, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def to_file(self) -> None:
        """Later playbacks write to a plain file again; whoever holds the FIFO stays blocked."""
        plain = self.out.with_name("plain.wav")
        plain.write_bytes(b"")
        os.replace(plain, self.out)

    def close(self) -> None:
        """The reader goes away: a write blocked on the FIFO fails (EPIPE) and returns."""
        if self._reader >= 0:
            os.close(self._reader)
            self._reader = -1


class HealthAtErrors(EventLog):
    """Records ``player.healthy()`` as each error arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.player: VlcPlayer | None = None
        self.healthy_at_error: list[bool] = []

    def __call__(self, event: PlayerEvent) -> None:
        if event.kind == "error" and self.player is not None:
            self.healthy_at_error.append(self.player.healthy())
        super().__call__(event)


@pytest.fixture
def log() -> HealthAtErrors:
    return HealthAtErrors()


def _player(log: HealthAtErrors, out: Path, stall_timeout: float) -> VlcPlayer:
    player = VlcPlayer(
        ["--aout=afile", f"--audiofile-file={out}"], log, limits=StallLimits(stall_timeout=stall_timeout)
    )
    log.player = player
    player.start()
    return player


@pytest.fixture
def stalled(log: HealthAtErrors, tmp_path: Path) -> Iterator[tuple[VlcPlayer, BlockedOutput]]:
    out = tmp_path / "out.wav"
    player = _player(log, out, stall_timeout=1.0)
    blocked = BlockedOutput(out)
    try:
        yield player, blocked
    finally:
        blocked.close()  # before close(): the abandoned engine can then release libVLC
        player.close()


def _wait_until(what: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.02)


def _heard(log: EventLog, out: Path, token: str, frequency: float, seconds: float) -> None:
    assert log.wait_final(token).kind == "ended"
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - seconds) <= 0.050
    assert dominant_frequency(samples, rate) == pytest.approx(frequency, rel=0.01)


@vlc_only
def test_a_blocked_output_is_a_stall_and_a_fresh_libvlc_plays_the_next_file(
    stalled: tuple[VlcPlayer, BlockedOutput], log: HealthAtErrors, tmp_path: Path
) -> None:
    player, blocked = stalled
    player.play("news", tone_file(tmp_path, 440, 20.0), 100)
    log.wait_for("news", "playing")
    blocked.wait_full()
    error = log.wait_final("news", timeout=1.0 + 8.0)
    assert error.kind == "error" and error.fault
    assert error.detail.startswith("player stalled: no progress for 1.")
    assert "of 00:20; libVLC restarted" in error.detail
    assert log.healthy_at_error == [False]
    assert player.restarts == 1
    assert player.hung_engines() == 1  # the old engine's stop() waits on the pipe
    blocked.to_file()
    _wait_until(player.healthy)  # the fresh engine answers
    player.play("next", tone_file(tmp_path, 1000, 0.5), 100)
    _heard(log, blocked.out, "next", 1000, 0.5)
    assert log.kinds("news") == ["playing", "error"]
    blocked.close()
    _wait_until(lambda: player.hung_engines() == 0)  # released on its own thread once unblocked


@vlc_only
def test_a_live_stream_into_a_blocked_output_is_a_stall(
    stalled: tuple[VlcPlayer, BlockedOutput], log: HealthAtErrors
) -> None:
    player, _ = stalled
    stream = ToneStream(1000, None, paced=True)
    player.play_stream("fm", stream, 100)
    error = log.wait_final("fm", timeout=1.0 + 8.0)
    assert error.kind == "error" and error.fault
    assert error.detail.startswith("player stalled: no progress for 1.")
    assert stream.closed.wait(10.0)  # the abandoned engine still ends its stream


@vlc_only
def test_a_play_does_not_wait_on_a_hung_stop(log: HealthAtErrors, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    player = _player(log, out, stall_timeout=60.0)  # only the hung stop() may restart libVLC here
    blocked = BlockedOutput(out)
    try:
        player.play("long", tone_file(tmp_path, 440, 20.0), 100)
        log.wait_for("long", "playing")
        blocked.wait_full()
        player.stop()  # hangs in libVLC: it joins an input thread blocked on the output
        blocked.to_file()
        player.play("emergency", tone_file(tmp_path, 1000, 0.5), 100)
        _heard(log, out, "emergency", 1000, 0.5)
        assert log.kinds("emergency") == ["playing", "ended"]
        assert log.kinds("long") == ["playing", "stopped"]
        assert player.restarts == 1 and player.hung_engines() == 1
    finally:
        blocked.close()
        player.close()


# --- the rules, without libVLC ------------------------------------------------------------------


def test_stall_rules() -> None:
    limits = StallLimits(stall_timeout=3.0, start_timeout=5.0, overrun=3.0)
    progress = Progress()
    assert stall_reason(progress, limits, 100.0) is None  # nothing asked yet
    progress.asked_at = 100.0
    assert stall_reason(progress, limits, 105.0) is None
    assert stall_reason(progress, limits, 105.1) == "player stalled: did not start playing within 5.0 s"
    progress.sounding_at = 101.0
    progress.sample(10, 45_000, now=113.0)
    assert stall_reason(progress, limits, 116.0) is None
    assert stall_reason(progress, limits, 116.5) == "player stalled: no progress for 3.5 s at 00:12 of 00:45"
    progress.waiting_on_source(116.5)  # a live source keeps it waiting: not a stall
    assert stall_reason(progress, limits, 117.0) is None
    progress.sample(11, 40_000, now=145.0)
    assert (
        stall_reason(progress, limits, 146.0) == "player stalled: played 5 s past the end of its 40 s media"
    )
    assert clock(3725) == "1:02:05"


def test_null_player_fakes_a_stall(tmp_path: Path) -> None:
    log = EventLog()
    player = NullPlayer(log, stall_timeout=0.2)
    player.start()
    try:
        player.stall_next()
        player.play("news", tone_file(tmp_path, 440, 5.0), 80)
        error = log.wait_final("news")
        assert (error.kind, error.fault) == ("error", True)
        assert error.detail == "player stalled: no progress for 0.2 s at 00:00 of 00:05; player restarted"
        assert not player.healthy() and "player stalled" in (player.fault() or "")
        player.recover()
        assert player.healthy()
        player.play("next", tone_file(tmp_path, 440, 0.2), 80)
        assert log.wait_final("next").kind == "ended"
    finally:
        player.close()
