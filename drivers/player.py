"""The audio player contract shared by the libVLC player and the null player.

A player plays one thing at a time and reports what happens as :class:`PlayerEvent` values posted
to an :data:`EventSink` from whatever thread noticed it.  Every playback is named by a *token* chosen
by the agent.  For each token the player posts at most one ``playing`` event and then exactly one
final event: ``ended`` (played to the end), ``stopped`` (``stop()`` or replaced by a later
``play``), or ``error`` (could not be played, or the backend failed while playing it).  An ``error`` whose
``fault`` is set blames the backend (it stalled or hung and was restarted), not the media.

``prepare(token, path)`` lets the player open a file ahead of its ``play``, so that the start is
quick and steady.  It posts no event and changes nothing that plays; the prepared file waits for a
``play`` with the same token and path, or until a later ``prepare`` replaces it.  Whatever is wrong
with the file is reported by ``play``, as for a file that was never prepared.

:class:`PlaybackLedger` enforces that rule for every backend, so a late libVLC callback about a
replaced playback can never be attributed to the playback that replaced it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from foundation.errors import ConfigError
from foundation.file_kinds import not_regular, shown_path

logger = logging.getLogger(__name__)

EventKind = Literal["playing", "ended", "stopped", "error"]
FINAL_KINDS: frozenset[str] = frozenset({"ended", "stopped", "error"})


@dataclass(frozen=True)
class PlayerEvent:
    """Something that happened to the playback named ``token``."""

    kind: EventKind
    token: str
    monotonic: float
    wall: float
    detail: str = ""
    fault: bool = False  # the backend failed (a stall, a hang), not the media


EventSink = Callable[[PlayerEvent], None]
"""Receives events on the player's own threads; must be thread-safe and return at once."""


@runtime_checkable
class PcmStream(Protocol):
    """Live PCM audio (signed 16-bit little-endian, interleaved), e.g. the FM receiver's output."""

    sample_rate: int
    channels: int

    def read(self, max_bytes: int) -> bytes:
        """Return up to ``max_bytes`` as soon as some are ready; b"" only at the end of the stream.

        Blocks for at most the stream's own timeout; a stream whose source stalls past that
        timeout ends (returns b"").  After ``close()`` a blocked or later read returns b"" promptly.
        """
        ...

    def close(self) -> None:
        """End the stream; safe to call from any thread and more than once."""
        ...


class Player(Protocol):
    """An audio player; ``prepare``, ``play`` and ``stop`` never block on the backend."""

    name: str
    start_latency: float | None
    """Seconds from ``play`` to ``playing`` measured while starting (a silent warm-up), or None."""

    def start(self) -> None:
        """Open the backend; raises :class:`foundation.errors.PlayerError` if it cannot start."""
        ...

    def prepare(self, token: str, path: Path) -> None:
        """Open ``path`` ahead of ``play(token, path, ...)``; replaces an earlier preparation."""
        ...

    def play(self, token: str, path: Path, volume: int, repeat: int = 1) -> None:
        """Play ``path`` at ``volume`` (0-100), replacing whatever plays; ``repeat`` (1-10) times
        back to back, as one playback (one ``playing``, one final event after the last time)."""
        ...

    def play_stream(self, token: str, stream: PcmStream, volume: int) -> None:
        """Play a live stream until it ends, replacing whatever plays; the player closes it."""
        ...

    def stop(self) -> None:
        """Stop the current playback, which gets a ``stopped`` event."""
        ...

    def close(self) -> None:
        """Stop playing and release the backend; safe to call twice."""
        ...

    def healthy(self) -> bool:
        """False while the backend is not started, has hung, or is being restarted."""
        ...

    def fault(self) -> str | None:
        """What is wrong with the backend in plain words (for the status), or None."""
        ...


class Playback:
    """One play request: its token, and whether it has already been reported on."""

    def __init__(self, token: str, what: str) -> None:
        self.token = token
        self.what = what
        self.announced = False
        self.finished = False

    def __repr__(self) -> str:
        return f"Playback({self.token!r}, {self.what!r})"


class PlaybackLedger:
    """Posts events so that each token gets at most one ``playing`` and exactly one final event.

    Only the current playback can be reported on; events about a replaced playback are dropped,
    because the replacement already reported it as ``stopped``.
    """

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._current: Playback | None = None

    @property
    def current(self) -> Playback | None:
        """The current playback if it has not finished."""
        with self._lock:
            current = self._current
        return current if current is not None and not current.finished else None

    def begin(self, token: str, what: str) -> Playback:
        """Make a new playback current; the one it replaces gets ``stopped`` if still unfinished."""
        playback = Playback(token, what)
        with self._lock:
            replaced, self._current = self._current, playback
            stale = replaced is not None and self._close(replaced)
        if stale and replaced is not None:
            self._post("stopped", replaced.token, f"replaced by {token}")
        return playback

    def playing(self, playback: Playback) -> None:
        """Announce ``playback`` (once) if it is still the current one."""
        with self._lock:
            post = playback is self._current and not playback.finished and not playback.announced
            playback.announced = playback.announced or post
        if post:
            self._post("playing", playback.token, playback.what)

    def resume(self, token: str, what: str) -> Playback:
        """The current playback if it is ``token``'s and not yet announced, else :meth:`begin`.

        A play that a restarted backend runs again keeps its playback: no second story.
        """
        with self._lock:
            current = self._current
        if current is not None and current.token == token and not (current.finished or current.announced):
            return current
        return self.begin(token, what)

    def finish(self, playback: Playback, kind: EventKind, detail: str = "", fault: bool = False) -> bool:
        """Post the final event of ``playback``; False if it was replaced or already finished."""
        with self._lock:
            post = playback is self._current and self._close(playback)
        if post:
            self._post(kind, playback.token, detail, fault)
        return post

    @staticmethod
    def _close(playback: Playback) -> bool:
        if playback.finished:
            return False
        playback.finished = True
        return True

    def _post(self, kind: EventKind, token: str, detail: str, fault: bool = False) -> None:
        if kind == "error":
            logger.warning("playback %s failed: %s", token, detail)
        else:
            logger.info("playback %s %s %s", token, kind, detail)
        self._sink(PlayerEvent(kind, token, time.monotonic(), time.time(), detail, fault))


def unreadable(path: Path) -> str:
    """Why no player could read ``path``, or ""; checked before the backend for a clear reason.

    It only looks (``stat``, ``access``) and never opens: opening a FIFO blocks until a writer comes.
    """
    shown = shown_path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return f"file not found: {shown}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}): {shown}"
    except ValueError:  # os.stat refuses a NUL before asking the system
        return f"is not a path the system accepts (it holds a NUL character): {shown}"
    kind = not_regular(info.st_mode)
    if kind is not None:
        return f"is {kind}, not an audio file: {shown}"
    if not os.access(path, os.R_OK):
        return f"file not readable: {shown}"
    if info.st_size == 0:
        return f"file is empty: {shown}"
    return ""


def check_volume(volume: int) -> int:
    """Return ``volume`` if it is within 0..100, else raise ValueError (a caller's bug)."""
    if not 0 <= volume <= 100:
        raise ValueError(f"volume {volume} is outside 0..100")
    return volume


MAX_REPEAT = 10  # the most times one playback repeats its file (an emergency's ``repeat``)


def check_repeat(repeat: int) -> int:
    """Return ``repeat`` if it is within 1..MAX_REPEAT, else raise ValueError (a caller's bug)."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise ValueError(f"repeat {repeat} is outside 1..{MAX_REPEAT}")
    return repeat


def make_player(backend: str, vlc_args: Sequence[str], sink: EventSink) -> Player:
    """Build the player named by ``audio.backend``: "vlc" (libVLC) or "null" (no sound)."""
    if backend == "vlc":
        from drivers.vlc_player import VlcPlayer

        return VlcPlayer(vlc_args, sink)
    if backend == "null":
        from drivers.null_player import NullPlayer

        return NullPlayer(sink)
    raise ConfigError([f"audio.backend: value {backend!r} is not a player: expected 'vlc' or 'null'"])
