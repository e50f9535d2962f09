"""The libVLC player: the only module that imports python-vlc.

Threads, and why:

* Every libVLC call runs on one command thread owned by an :class:`_Engine` (one ``vlc.Instance``
  and one media player).  ``play``/``stop`` only queue a command, so a libVLC call that hangs (as
  ``stop()`` and ``set_media()`` have on Pis) cannot freeze the agent.
* libVLC calls back on its own threads.  Callbacks never call libVLC (that deadlocks); they only
  post events through the :class:`PlaybackLedger`.
* A watchdog thread checks that no command runs longer than ``command_timeout``.  When one does,
  the engine is abandoned, the current playback gets an ``error`` event, queued commands move to a
  fresh engine, and ``healthy()`` is False until the fresh engine has completed a command.
* The watchdog also supervises playback, not only calls (rules in :mod:`drivers.playback_watch`):
  every 0.25 s it queues a probe that reads the output's played-buffer count on the command thread
  (libVLC's playing time is the input's clock and goes on while the output is blocked).  No
  played buffer for ``stall_timeout`` (3 s), no "playing" within ``start_timeout`` (5 s) or playing
  past the media's length plus ``overrun`` (3 s) is a stall: the playback gets an ``error`` marked
  ``fault`` ("player stalled: no progress for 3.0 s at 00:12 of 00:45; libVLC restarted") and
  libVLC restarts on a fresh engine.  A hung command thread answers no probe: a stall as well.
  A live stream whose feed is blocked in one source read for 0.5 s or more waits on its source,
  which the stream's own read timeout handles; that is not a stall.
* A play never waits on a hung engine: when a play runs, or waits behind a command, on an engine
  busy for over ``preempt_after`` (0.5 s), that engine is abandoned at once and the play runs on a
  fresh one (a fresh ``vlc.Instance`` in the same process: libVLC 3 allows several, and a new one
  plays while another is hung in ``stop()``), as the same playback (no second story for its token).
* An abandoned engine releases libVLC on its own thread once its hung call returns; engines are
  never joined without a timeout.  :meth:`VlcPlayer.hung_engines` counts those still alive; more
  than :data:`MAX_ABANDONED` is a fault of its own (``fault()``, ``healthy()``) and playing goes on.

Attribution: callbacks read ``_Engine._active``, which the command thread sets only after
``set_media`` has returned.  libVLC 3 joins the previous input thread inside ``set_media`` and
sends events synchronously from it, so an event about the old media can only arrive while the old
``_active`` is still set; events about an already replaced playback are dropped by the ledger.

Corrupt files: libVLC 3 reports a file it cannot demux as "playing" then "ended" with no
elementary stream.  So ``playing`` is posted only once an audio stream exists, and an end without
one is reported as an ``error``.

Start latency: ``prepare`` creates and parses the media ahead (the parse reads the file, so it is
in the page cache at the start) and, when nothing plays, already sets it on the media player, so
that the start is only ``play()``.  ``start()`` plays a short silence twice, unannounced: the first
libVLC playback of a process loads its demuxer, decoder and audio output and is several times
slower than the next, and the second gives :attr:`VlcPlayer.start_latency`.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.playback_watch import SOURCE_WAIT, Progress, StallLimits, stall_reason
from drivers.player import (
    EventSink,
    PcmStream,
    Playback,
    PlaybackLedger,
    check_repeat,
    check_volume,
    unreadable,
)
from drivers.wav import WavStreamFeed, wav_header
from foundation.errors import PlayerError

logger = logging.getLogger(__name__)

BASE_ARGS = ("--no-video", "--quiet", "--no-xlib")
_AUDIO_TRACK = 0  # libvlc_track_audio
PARSE_TIMEOUT_MS = 2000  # a prepared file that takes longer to parse is simply played unparsed
WARM_UP_RATE = 48000
WARM_UP_SECONDS = 0.1
PROBE_EVERY = 0.25  # how often the output's progress is sampled while something plays
MAX_ABANDONED = 3  # more abandoned engines than this still hanging is a fault of its own


def load_libvlc() -> Any:
    """Import python-vlc, which loads libvlc.so; PlayerError with the fix if it cannot."""
    try:
        return importlib.import_module("vlc")
    except (ImportError, OSError, NotImplementedError) as exc:
        raise PlayerError(f"libVLC not found: apt install vlc-bin vlc-plugin-base ({exc})") from exc


@dataclass
class _Command:
    what: str
    token: str | None  # a play's token: a play never waits behind a hung command
    run: Callable[[_Engine], None]
    rerun: bool = False  # moved from an abandoned engine: its playback is already begun


class _Active:
    """What libVLC is playing now, as seen by its callbacks."""

    def __init__(self, playback: Playback, feed: WavStreamFeed | None = None, repeat: int = 1) -> None:
        self.playback = playback
        self.feed = feed
        self.repeat = repeat  # the media plays this many times (libVLC's input-repeat)
        self.audio_seen = False
        self.reached_playing = False
        self.sounding = threading.Event()  # set with ``sounding_at`` when "playing" is due
        self.sounding_at = 0.0
        self.over = threading.Event()  # libVLC reported the end or an error
        self.media: Any = None
        self.progress = Progress()


@dataclass
class _Staged:
    """Media prepared for ``token``; ``loaded`` while it is the media player's media, not played."""

    token: str
    path: Path
    media: Any
    loaded: bool = False


class _Engine:
    """One vlc.Instance and media player, touched only by the engine's command thread."""

    def __init__(self, args: Sequence[str], ledger: PlaybackLedger, on_done: Callable[[], None]) -> None:
        self._args = list(args)
        self._ledger = ledger
        self._on_done = on_done
        self.commands: queue.Queue[_Command | None] = queue.Queue()
        self.busy: tuple[_Command, float] | None = None
        self.abandoned = False
        self.probe_queued = False
        self._rerun = False
        self.ready = threading.Event()
        self.failure: PlayerError | None = None
        self._vlc: Any = None
        self._instance: Any = None
        self._player: Any = None
        self._active: _Active | None = None
        self._staged: _Staged | None = None
        self._keepalive: tuple[Any, ...] = ()
        self._thread = threading.Thread(target=self._run, name="vlc-commands", daemon=True)

    @property
    def staged(self) -> _Staged | None:
        return self._staged

    @property
    def active(self) -> _Active | None:
        return self._active

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def waiting_play(self) -> bool:
        """Whether a play is queued on this engine (behind whatever runs now)."""
        with self.commands.mutex:
            return any(command is not None and command.token for command in self.commands.queue)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abandon(self) -> list[_Command]:
        """Stop listening to this engine and hand back the commands it has not started.

        The engine releases libVLC on its own thread once its current call returns (if ever).
        """
        self.abandoned = True
        pending: list[_Command] = []
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            if command is not None:
                pending.append(command)
        self.commands.put(None)
        return pending

    def _run(self) -> None:
        try:
            self._open()
        except PlayerError as exc:
            self.failure = exc
        self.ready.set()
        while (command := self.commands.get()) is not None and not self.abandoned:
            self.busy = (command, time.monotonic())
            self._execute(command)
            self.busy = None
            if not self.abandoned:
                self._on_done()
        self._release()

    def _execute(self, command: _Command) -> None:
        if self.failure is not None:
            if command.token is not None:
                playback = self._ledger.begin(command.token, command.what)
                self._ledger.finish(playback, "error", str(self.failure))
            return
        self._rerun = command.rerun
        try:
            command.run(self)
        except Exception as exc:  # a libVLC binding error must not kill the command thread
            logger.exception("libVLC command %r failed", command.what)
            current = self._ledger.current
            if current is not None:
                self._ledger.finish(current, "error", f"libVLC failed during {command.what}: {exc}")

    def _open(self) -> None:
        self._vlc = load_libvlc()
        self._instance = self._vlc.Instance(self._args)
        if self._instance is None:
            raise PlayerError(
                f"libVLC started without its plugins or refused its arguments {self._args}: "
                "install vlc-plugin-base and check audio.vlc_args"
            )
        self._player = self._instance.media_player_new()
        events = self._player.event_manager()
        kinds = {
            "es": self._vlc.EventType.MediaPlayerESAdded,
            "playing": self._vlc.EventType.MediaPlayerPlaying,
            "end": self._vlc.EventType.MediaPlayerEndReached,
            "error": self._vlc.EventType.MediaPlayerEncounteredError,
        }
        for name, event_type in kinds.items():
            events.event_attach(event_type, self._on_vlc_event, name)
        logger.info("libVLC %s started with %s", self._vlc.libvlc_get_version().decode(), self._args)

    def _release(self) -> None:
        if self._player is not None:
            self._halt()
            self._drop_staged()
            self._player.release()
            self._instance.release()
            self._player = self._instance = None
            logger.info("libVLC released%s", " (an abandoned instance)" if self.abandoned else "")

    # --- libVLC's threads: post only, never call libVLC -----------------------------------------
    def _on_vlc_event(self, event: Any, kind: str) -> None:
        active = self._active
        if active is None or self.abandoned:
            return
        playback = active.playback
        if kind == "es" and event.u.meta_type == _AUDIO_TRACK:
            active.audio_seen = True
        elif kind == "playing":
            active.reached_playing = True
        elif kind == "end":
            self._report_end(active)
            active.over.set()
        elif kind == "error":
            self._ledger.finish(playback, "error", f"libVLC could not open or decode {playback.what}")
            active.over.set()
        if active.audio_seen and active.reached_playing and not active.sounding.is_set():
            active.sounding_at = active.progress.sounding_at = time.monotonic()
            active.sounding.set()
            self._ledger.playing(playback)

    def _report_end(self, active: _Active) -> None:
        if active.audio_seen:
            self._ledger.finish(active.playback, "ended", "end of media")
        else:
            detail = f"libVLC found no audio in {active.playback.what} (corrupt or not an audio file)"
            self._ledger.finish(active.playback, "error", detail)

    # --- commands, on the command thread ----------------------------------------------------------
    def prepare_file(self, token: str, path: Path) -> None:
        self._drop_staged()
        if unreadable(path):
            return  # play() reports why
        try:
            staged = _Staged(token, path, self._instance.media_new_path(str(path)))
            staged.media.parse_with_options(self._vlc.MediaParseFlag.local, PARSE_TIMEOUT_MS)  # async
            if self._ledger.current is None:  # nothing plays: load it now, so its start is only play()
                self._detach()
                self._player.set_media(staged.media)
                staged.loaded = not self.abandoned
        except Exception:  # a failed preparation must not end what plays: play() starts afresh
            logger.exception("libVLC could not prepare %s", path)
            return
        self._staged = staged

    def probe(self) -> None:
        """Sample the output's progress for the supervisor (see :mod:`drivers.playback_watch`)."""
        self.probe_queued = False
        active = self._active
        if active is None or active.media is None:
            return
        stats = self._vlc.MediaStats()
        played = stats.played_abuffers if active.media.get_stats(stats) else 0
        # libVLC's length is one pass of the media: a repeated file plays that times ``repeat``
        length = self._player.get_length() * active.repeat if active.feed is None else 0
        active.progress.sample(played, length)

    def _begin(self, token: str, what: str) -> Playback:
        return self._ledger.resume(token, what) if self._rerun else self._ledger.begin(token, what)

    def play_file(self, token: str, path: Path, volume: int, repeat: int = 1) -> None:
        playback = self._begin(token, str(path))
        staged = self._staged
        if staged is not None and (staged.token, staged.path) == (token, path):
            self._staged = None
        else:
            staged = None
        problem = unreadable(path)
        if problem:
            self._halt()
            if staged is not None:
                staged.media.release()
            self._ledger.finish(playback, "error", problem)
            return
        media = staged.media if staged is not None else self._instance.media_new_path(str(path))
        if repeat > 1:  # read when play() opens the input, so a loaded media takes it too
            media.add_option(f":input-repeat={repeat - 1}")
        if staged is not None and staged.loaded:
            self._detach()
            self._go(_Active(playback, repeat=repeat), media, volume, ())
        else:
            self._switch(_Active(playback, repeat=repeat), media, volume, ())

    def warm_up(self, path: Path, budget: float) -> float | None:
        """Play ``path`` (silence) twice, unannounced; the second play's latency to "playing".

        Each plays to its end and the volume is left alone: libVLC 3 drops its audio output on
        ``stop()``, after which the volume set before the next ``play()`` is not applied.
        Gives up (None) after ``budget`` seconds, well before the watchdog would.
        """
        deadline = time.monotonic() + budget
        latency = None
        for _ in range(2):
            active = _Active(Playback("warm-up", str(path)))  # never begun in the ledger: no events
            asked = time.monotonic()
            self._switch(active, self._instance.media_new_path(str(path)), None, ())
            if not (
                active.sounding.wait(max(0.0, deadline - time.monotonic()))
                and active.over.wait(max(0.0, deadline - time.monotonic()))
            ):
                logger.warning("libVLC warm-up: a short silence did not play within %g s", budget)
                return None
            latency = active.sounding_at - asked
        self._detach()
        return latency

    def play_stream(self, token: str, stream: PcmStream, volume: int) -> None:
        what = f"stream {stream.sample_rate} Hz x{stream.channels}"
        feed = WavStreamFeed(stream)
        read_cb = self._vlc.CallbackDecorators.MediaReadCb(_reader(feed))
        media = self._instance.media_new_callbacks(None, read_cb, None, None, None)
        media.add_option(":demux=wav")
        self._switch(_Active(self._begin(token, what), feed), media, volume, (read_cb,))

    def stop(self) -> None:
        current = self._ledger.current
        self._halt()
        if current is not None:
            self._ledger.finish(current, "stopped", "stop requested")

    def _switch(self, active: _Active, media: Any, volume: int | None, keep: tuple[Any, ...]) -> None:
        self._detach()
        self._player.set_media(media)  # stops and joins the previous input: may hang on a Pi
        if self.abandoned:  # the watchdog gave up on us meanwhile: a fresh engine plays instead
            return
        if self._staged is not None:
            self._staged.loaded = False
        self._go(active, media, volume, keep)

    def _go(self, active: _Active, media: Any, volume: int | None, keep: tuple[Any, ...]) -> None:
        """Play ``media``, which is already the media player's media (``volume`` None: as it is)."""
        self._active = active
        active.media = media
        self._hold(media, *keep)
        if volume is not None and self._player.audio_set_volume(volume) != 0:
            logger.debug("this audio output has no volume control; volume %d not applied", volume)
        active.progress.asked_at = time.monotonic()
        if self._player.play() != 0:
            self._ledger.finish(active.playback, "error", f"libVLC refused to play {active.playback.what}")

    def _halt(self) -> None:
        self._detach()
        self._player.stop()  # joins the input thread: may hang on a Pi
        self._hold()

    def _drop_staged(self) -> None:
        staged, self._staged = self._staged, None
        if staged is not None:
            staged.media.release()  # the media player keeps its own reference if it was loaded

    def _detach(self) -> None:
        """Silence callbacks of the current media and end its stream before libVLC stops it."""
        active, self._active = self._active, None
        if active is not None and active.feed is not None:
            active.feed.close()

    def _hold(self, *objects: Any) -> None:
        # The read callback must outlive libVLC's use of the media, which ends only after
        # set_media() or stop() has returned: ctypes would free it under libVLC otherwise.
        previous, self._keepalive = self._keepalive, objects
        for item in previous:
            if hasattr(item, "release"):
                item.release()


def _reader(feed: WavStreamFeed) -> Callable[[int, Any, int], int]:
    """libVLC's read callback for ``feed``: bytes read, 0 at the end, -1 on failure."""

    def read(_opaque: int, buffer: Any, length: int) -> int:
        try:
            chunk = feed.read(length)
        except Exception:
            logger.exception("PCM stream failed")
            return -1
        ctypes.memmove(buffer, chunk, len(chunk))
        return len(chunk)

    return read


class VlcPlayer:
    """Plays files and live PCM streams through libVLC, supervising it."""

    name = "vlc"

    def __init__(
        self,
        vlc_args: Sequence[str],
        sink: EventSink,
        command_timeout: float = 5.0,
        *,
        limits: StallLimits | None = None,
        preempt_after: float = 0.5,
    ) -> None:
        self.start_latency: float | None = None
        self._args = [*BASE_ARGS, *vlc_args]
        self._ledger = PlaybackLedger(sink)
        self._timeout = command_timeout
        self._limits = limits or StallLimits()
        self._preempt_after = preempt_after
        self._lock = threading.Lock()
        self._engine: _Engine | None = None
        self._abandoned: list[_Engine] = []
        self._degraded = False
        self._last_fault: str | None = None
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        engine = self._new_engine()
        if not engine.ready.wait(self._timeout):
            engine.abandon()
            raise PlayerError(f"libVLC did not start within {self._timeout:g} s")
        if engine.failure is not None:
            engine.commands.put(None)
            raise engine.failure
        self._engine = engine
        self._closing.clear()
        self._watchdog = threading.Thread(target=self._watch, name="vlc-watchdog", daemon=True)
        self._watchdog.start()
        self.start_latency = self._warm_up()

    def prepare(self, token: str, path: Path) -> None:
        self._submit(_Command(f"prepare {path}", None, lambda e: e.prepare_file(token, path)))

    def play(self, token: str, path: Path, volume: int, repeat: int = 1) -> None:
        check_volume(volume)
        check_repeat(repeat)
        what = f"play {path}" if repeat == 1 else f"play {path} x{repeat}"
        self._submit(_Command(what, token, lambda e: e.play_file(token, path, volume, repeat)))

    def play_stream(self, token: str, stream: PcmStream, volume: int) -> None:
        check_volume(volume)
        self._submit(_Command(f"play stream {token}", token, lambda e: e.play_stream(token, stream, volume)))

    def stop(self) -> None:
        self._submit(_Command("stop", None, _Engine.stop))

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=self._timeout)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.commands.put(None)
            if not engine.join(self._timeout):
                logger.warning("libVLC did not shut down within %g s; leaving it behind", self._timeout)

    @property
    def staged(self) -> tuple[str, Path] | None:
        """The token and path prepared and not yet played, once libVLC has prepared them."""
        engine = self._engine
        staged = None if engine is None else engine.staged
        return None if staged is None else (staged.token, staged.path)

    def healthy(self) -> bool:
        return self.fault() is None

    def fault(self) -> str | None:
        engine = self._engine
        if engine is None:
            return "libVLC is not started"
        if engine.failure is not None:
            return str(engine.failure)
        if self._degraded:
            return f"{self._last_fault}; libVLC is being restarted"
        stuck = self._stuck_on(engine)
        if stuck is not None:
            return f"libVLC has not finished {stuck} within {self._timeout:g} s"
        hung = self.hung_engines()
        if hung > MAX_ABANDONED:
            return f"{hung} abandoned libVLC instances are still hung: restart the agent to free them"
        return None

    def hung_engines(self) -> int:
        """How many abandoned engines still have a live thread (hung, or still releasing)."""
        with self._lock:
            self._abandoned = [engine for engine in self._abandoned if engine.alive]
            return len(self._abandoned)

    def _warm_up(self) -> float | None:
        """Play a short silence through libVLC (unannounced); its play-to-playing latency."""
        done = threading.Event()
        result: list[float | None] = []

        def run(engine: _Engine) -> None:
            try:
                result.append(engine.warm_up(path, self._timeout / 2))
            finally:
                done.set()

        with tempfile.TemporaryDirectory(prefix="loa-warm-up-") as directory:
            path = Path(directory) / "silence.wav"
            data = bytes(2 * round(WARM_UP_RATE * WARM_UP_SECONDS))
            path.write_bytes(wav_header(WARM_UP_RATE, 1, len(data)) + data)
            self._submit(_Command("warm-up", None, run))
            finished = done.wait(self._timeout)
        latency = result[0] if finished and result else None
        if latency is None:
            logger.warning("libVLC warm-up gave no start latency; the agent assumes a default")
        else:
            logger.info("libVLC warmed up: %.1f ms from play to playing", 1000 * latency)
        return latency

    def _submit(self, command: _Command) -> None:
        with self._lock:  # a restart moves queued commands under this lock: none is lost
            engine = self._engine
            if engine is not None:
                engine.commands.put(command)
        if engine is None:
            raise PlayerError("the libVLC player is not started")
        if command.token is not None:
            self._preempt(engine)

    def _new_engine(self) -> _Engine:
        engine = _Engine(self._args, self._ledger, lambda: self._command_done(engine))
        engine.start()
        return engine

    def _command_done(self, engine: _Engine) -> None:
        if engine is self._engine and engine.failure is None:
            self._degraded = False

    def _stuck_on(self, engine: _Engine) -> str | None:
        busy = engine.busy
        if busy is not None and time.monotonic() - busy[1] > self._timeout:
            return busy[0].what
        return None

    def _watch(self) -> None:
        probed = 0.0
        while not self._closing.wait(min(0.1, self._timeout / 4)):
            engine = self._engine
            if engine is None:
                continue
            self._check(engine)
            now = time.monotonic()
            active = engine.active
            if now - probed >= PROBE_EVERY and active is not None and not active.over.is_set():
                probed = now
                if not engine.probe_queued and engine is self._engine:
                    engine.probe_queued = True
                    engine.commands.put(_Command("probe", None, _Engine.probe))

    def _preempt(self, engine: _Engine) -> bool:
        """Restart ``engine`` if a play runs, or waits behind a command, longer than ``preempt_after``.

        An emergency must never wait on a hung libVLC: a fresh instance plays it instead.
        """
        busy = engine.busy
        if busy is None or time.monotonic() - busy[1] <= self._preempt_after:
            return False
        command = busy[0]
        if command.token is None and not engine.waiting_play():
            return False
        why = f"libVLC hung in {command.what} for over {self._preempt_after:g} s while a play waited"
        self._restart(engine, why, rerun=command.token is not None)
        return True

    def _check(self, engine: _Engine) -> None:
        """Restart ``engine`` if a command hangs, a play waits on a busy engine, or playback stalls."""
        if self._preempt(engine):
            return
        now = time.monotonic()
        what = self._stuck_on(engine)
        if what is not None:
            self._restart(engine, f"libVLC did not finish {what} within {self._timeout:g} s", fail=True)
            return
        active = engine.active
        if active is None or active.over.is_set() or self._ledger.current is not active.playback:
            return
        if active.feed is not None:
            reading = active.feed.reading_since
            if reading is not None and now - reading >= SOURCE_WAIT:
                active.progress.waiting_on_source(now)
        reason = stall_reason(active.progress, self._limits, now)
        if reason is not None:
            self._restart(engine, reason, fail=True)

    def _restart(self, engine: _Engine, why: str, *, fail: bool = False, rerun: bool = False) -> None:
        """Give up on ``engine``: move its queued commands (and a play under way) to a fresh one.

        ``fail`` ends the current playback with an ``error`` (a fault); ``rerun`` plays the play
        that was under way again on the fresh engine, as the same playback.
        """
        with self._lock:
            if engine is not self._engine:
                return
            logger.error("%s: restarting libVLC on a fresh instance", why)
            self._degraded = True
            self._last_fault = why
            busy = engine.busy
            pending = engine.abandon()
            self._abandoned.append(engine)
            failed = self._ledger.current if fail else None
            fresh = self._new_engine()
            if rerun and busy is not None:
                command = busy[0]
                fresh.commands.put(_Command(command.what, command.token, command.run, rerun=True))
            for command in pending:
                if command.what != "probe":
                    fresh.commands.put(command)
            self._engine = fresh
            self.restarts += 1
        if failed is not None:  # outside the lock: the sink may ask healthy()
            self._ledger.finish(failed, "error", f"{why}; libVLC restarted", fault=True)
        fresh.commands.put(_Command("restart", None, lambda _engine: None))  # healthy once it answers
