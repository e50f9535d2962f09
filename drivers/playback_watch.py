"""Is a playback progressing?  The libVLC player's supervision rules, without libVLC.

libVLC's playing time is the input's clock, not the output's: with the audio output blocked (a
sound card that no longer takes samples, a full pipe) ``get_time()`` and its TimeChanged events
go on advancing while nothing sounds, and ``stop()`` then hangs.  What stops is the count of audio
buffers the output has played (``libvlc_media_get_stats``: ``played_abuffers``), so that count is
the progress measured here.  The libVLC player samples it on its command thread; a command thread
that no longer answers cannot sample it, which reads as no progress too.

A playback is stalled when, while it is the current one:

* it has not started ("playing") within ``start_timeout`` of libVLC's ``play()``;
* no audio buffer has been played for ``stall_timeout``, unless a live source is what keeps it
  waiting (the stream's feed has been blocked in one read for :data:`SOURCE_WAIT` or longer: the
  stream's own read timeout handles that); a live stream that libVLC still reads but does not play,
  or no longer reads at all, is stalled;
* it has been playing for longer than its media's length plus ``overrun``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

SOURCE_WAIT = 0.5  # a feed read blocked this long means the live source, not libVLC, is waiting


@dataclass(frozen=True)
class StallLimits:
    stall_timeout: float = 3.0
    start_timeout: float = 5.0
    overrun: float = 3.0


class Progress:
    """What the supervisor knows of one playback; written by the command thread and callbacks."""

    def __init__(self) -> None:
        self.asked_at: float | None = None  # libVLC's play() was called
        self.sounding_at: float | None = None  # "playing" was posted
        self.progress_at = 0.0  # the played-buffer count last rose
        self.played = 0
        self.length: float | None = None  # seconds, once libVLC knows the media's length

    def sample(self, played: int, length_ms: int, now: float | None = None) -> None:
        """Note the output's played-buffer count and the media's length (ms, 0 if unknown)."""
        if played > self.played:
            self.played = played
            self.progress_at = time.monotonic() if now is None else now
        if length_ms > 0:
            self.length = length_ms / 1000

    def waiting_on_source(self, now: float) -> None:
        """A live source keeps libVLC waiting: that is not libVLC's stall."""
        self.progress_at = now


def stall_reason(progress: Progress, limits: StallLimits, now: float) -> str | None:
    """Why the playback counts as stalled at ``now``, or None; see the module's rules."""
    if progress.sounding_at is None:
        asked = progress.asked_at
        if asked is not None and now - asked > limits.start_timeout:
            return f"player stalled: did not start playing within {limits.start_timeout:.1f} s"
        return None
    last = max(progress.progress_at, progress.sounding_at)
    quiet = now - last
    if quiet > limits.stall_timeout:
        where = clock(last - progress.sounding_at)
        of = f" of {clock(progress.length)}" if progress.length is not None else ""
        return f"player stalled: no progress for {quiet:.1f} s at {where}{of}"
    if progress.length is not None:
        past = now - progress.sounding_at - progress.length
        if past > limits.overrun:
            return f"player stalled: played {past:.0f} s past the end of its {progress.length:.0f} s media"
    return None


def clock(seconds: float) -> str:
    """``seconds`` as mm:ss (h:mm:ss from an hour)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
