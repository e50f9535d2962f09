"""The agent's main loop: one thread owns all state.

Drivers (libVLC, gpiozero, the FM receiver) and the control socket run on their own threads and
only post events to :attr:`Agent.events`.  The loop wakes at the scheduler's next instant (relay
pre-roll, a start, post-roll expiry) or when an event arrives, asks the pure scheduler what to do,
carries it out, and publishes a status snapshot for ``loa status``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.clock_trust import ClockState, ClockTrust
from agent.config import Config
from agent.schedule_source import ScheduleSource
from agent.start_timing import StartTimer
from agent.status import StatusBoard
from agent.store import PlayRecord, Store, iso
from agent.systemd_notify import Notifier
from drivers.gpio import AmplifierRelays, LedCode, StatusLed
from drivers.player import Player, PlayerEvent, unreadable
from scheduler.engine import Action, Engine, Interrupt, Record, Start
from scheduler.items import Outcome
from scheduler.recurrence import Occurrence

if TYPE_CHECKING:  # the FM stack (numpy, scipy) is imported only when fm.backend is set
    from agent.fm_relay import FmRelay

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0  # the loop runs at least this often (clock trust, watchdog, status)
ENDED_OUTCOMES = frozenset({Outcome.COMPLETED, Outcome.FAILED, Outcome.INTERRUPTED})
WATERMARK_EVERY = timedelta(seconds=10)
DONE_KEYS_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class Reload:
    """Re-read the local schedule file (SIGHUP, `loa reload`)."""


@dataclass
class Playing:
    occurrence: Occurrence
    asked_at: datetime


@dataclass
class LoopState:
    clock: ClockState = field(default_factory=lambda: ClockState(False, "not checked yet"))
    playing: Playing | None = None
    watermark_saved: datetime | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Agent:
    """Wires scheduler, player, relays, LED, clock trust and store into one loop."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        player: Player,
        relays: AmplifierRelays,
        led: StatusLed | None,
        clock: ClockTrust,
        schedule: ScheduleSource,
        notifier: Notifier | None = None,
        events: queue.Queue[object] | None = None,
        fm: FmRelay | None = None,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.store = store
        self.player = player
        self.relays = relays
        self.led = led
        self.clock = clock
        self.schedule = schedule
        self.notifier = notifier or Notifier("")
        self.wall = wall
        self.fm = fm
        self.events: queue.Queue[object] = events if events is not None else queue.Queue()
        self.board = StatusBoard(config)
        self.state = LoopState()
        self.all_zones = frozenset(config.all_zones)
        # key -> when the player said "playing"; kept past state.playing, for the engine's Record
        self.started_at: dict[str, datetime] = {}
        # start timing: play() is called the player's measured latency before each start
        latency = player.start_latency
        self.start_timer = StartTimer(None if latency is None else timedelta(seconds=latency))
        self.engine = self._make_engine(resume=False)
        self._resumed = False
        self.board.publish(self)  # the control socket answers from the first instant

    # -- wiring ---------------------------------------------------------------------------------

    def post(self, event: object) -> None:
        """Hand an event to the main loop; safe from any thread."""
        self.events.put(event)

    def _make_engine(self, resume: bool) -> Engine:
        """A scheduler engine; ``resume`` carries over the previous run's watermark.

        Only a trusted clock may judge the saved watermark, so the engine is rebuilt with it when
        the clock first becomes trusted (before that it never ticks).
        """
        now = self.wall()
        done = self.store.handled_keys(iso(now - DONE_KEYS_WINDOW) or "")
        gpio = self.config.gpio
        return Engine(
            self.schedule.items,
            self.config.device.timezone,
            all_zones=self.all_zones,
            catch_up=self.config.schedule.catch_up,
            max_delay=self.config.schedule.max_delay,
            preroll=gpio.preroll,
            postroll=gpio.postroll,
            watermark=self._saved_watermark(now) if resume else None,
            done_keys=done,
        )

    def _saved_watermark(self, now: datetime) -> datetime | None:
        """The last instant the previous run handled, unless it lies in the future.

        A watermark ahead of now comes from a clock that was wrong when it was saved; keeping it
        would hold every item until real time caught up, so it is dropped (and said so).
        """
        saved = self.store.get_state("watermark")
        if not isinstance(saved, str):
            return None
        watermark = datetime.fromisoformat(saved)
        if watermark > now + timedelta(minutes=1):
            logger.warning("saved watermark %s is in the future: ignoring it", saved)
            self.store.add_event("warning", "watermark_dropped", f"saved watermark {saved} is in the future")
            return None
        return watermark

    def close_unfinished(self) -> None:
        """Rows left 'playing' by a power cut or crash are closed as interrupted."""
        for record in self.store.unfinished_plays():
            reason = "agent stopped while playing (power cut, crash or restart)"
            self.store.record_play(replace(record, outcome="interrupted", reason=reason))
            self.store.add_event("warning", "play_interrupted", f"{record.key}: {reason}")

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        self.close_unfinished()
        self._iterate()
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            try:
                event = self.events.get(timeout=self._timeout())
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(event)
            self._iterate()
        self._shutdown()

    def _timeout(self) -> float:
        now = self.wall()
        wake = self.engine.next_wakeup(now) if self.state.clock.trusted else None
        if wake is None:
            return HEARTBEAT
        return max(0.0, min(HEARTBEAT, (wake - now).total_seconds()))

    def _iterate(self) -> None:
        now = self.wall()
        self._check_clock()
        if self.state.clock.trusted:
            self.engine.start_lead = self.start_timer.lead()  # start timing
            self._carry_out(self.engine.tick(now), now)
            self._prepare_next(now)  # start timing
        if self.fm is not None:
            self.fm.drive(
                now,
                clock_trusted=self.state.clock.trusted,
                scheduled_busy=self.state.playing is not None or bool(self.engine.queue),
                scheduled_playing=self.state.playing is not None,
            )
        self.relays.apply(self._zones_wanted(now))
        self._show_led()
        self._save_watermark(now)
        self.notifier.watchdog()
        self.board.publish(self)

    def _check_clock(self) -> None:
        state = self.clock.check()
        if state.trusted != self.state.clock.trusted:
            severity = "info" if state.trusted else "warning"
            logger.log(
                logging.INFO if state.trusted else logging.WARNING,
                "clock %s: %s",
                "trusted" if state.trusted else "NOT trusted",
                state.reason,
            )
            self.store.add_event(severity, "clock_trust", state.reason)
        self.state.clock = state
        if state.trusted and not self._resumed:
            self.engine = self._make_engine(resume=True)
            self._resumed = True

    def _zones_wanted(self, now: datetime) -> frozenset[str]:
        wanted = self.engine.zones_wanted(now) if self.state.clock.trusted else frozenset()
        if self.fm is not None and self.fm.active_token is not None:
            wanted |= self.fm.zones
        return wanted

    def _show_led(self) -> None:
        if self.led is None:
            return
        if not self.player.healthy():
            code = LedCode.FAULT
        elif not self.state.clock.trusted:
            code = LedCode.CLOCK_UNTRUSTED
        elif self.state.playing is not None:
            code = LedCode.PLAYING
        elif self.fm is not None and self.fm.active_token is not None:
            code = LedCode.FM_RELAY
        else:
            code = LedCode.OK_IDLE
        self.led.show(code)

    def _prepare_next(self, now: datetime) -> None:
        """Start timing: hand the next occurrence's file to the player when its relays close."""
        occurrence = self.start_timer.to_prepare(self.engine.upcoming(now, 1), now, self.config.gpio.preroll)
        if occurrence is not None:
            self.player.prepare(occurrence.key, self.schedule.audio_path(occurrence.item))

    def _save_watermark(self, now: datetime) -> None:
        mark = self.engine.watermark
        saved = self.state.watermark_saved
        if mark is None or (saved is not None and now - saved < WATERMARK_EVERY):
            return
        self.store.put_state("watermark", iso(mark))
        self.state.watermark_saved = now

    def _shutdown(self) -> None:
        playing = self.state.playing
        if playing is not None:
            self.player.stop()
            now = self.wall()
            self._record(
                playing.occurrence,
                Outcome.INTERRUPTED,
                "agent stopped",
                actual=self.started_at.pop(playing.occurrence.key, None),
                ended=now,
            )
            self.state.playing = None
        mark = self.engine.watermark
        if mark is not None:
            self.store.put_state("watermark", iso(mark))
        self.relays.apply(frozenset())

    # -- events ---------------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        if isinstance(event, PlayerEvent) and self.fm is not None and event.token == self.fm.active_token:
            self.fm.on_player_event(event, self.wall())
        elif isinstance(event, PlayerEvent):
            self._on_player(event)
        elif self.fm is not None and self.fm.is_event(event):
            self.fm.on_fm_event(event)  # type: ignore[arg-type]
        elif isinstance(event, Reload):
            self._reload()
        else:
            logger.warning("ignoring unknown event %r", event)

    def _on_player(self, event: PlayerEvent) -> None:
        playing = self.state.playing
        if playing is None or event.token != playing.occurrence.key:
            logger.debug("event for a playback no longer current: %s", event)
            return
        at = datetime.fromtimestamp(event.wall, UTC)
        if event.kind == "playing":
            self.started_at[event.token] = at
            self.start_timer.observe(playing.asked_at, at)  # start timing
            self._record(playing.occurrence, None, "", actual=at)
            return
        outcome = {"ended": Outcome.COMPLETED, "error": Outcome.FAILED}.get(event.kind, Outcome.INTERRUPTED)
        if outcome is Outcome.FAILED:
            self.store.add_event("error", "play_failed", f"{playing.occurrence.item.id}: {event.detail}")
        self._finish(outcome, event.detail, at)

    def _finish(self, outcome: Outcome, reason: str, at: datetime) -> None:
        """The current playback ended; the engine records it and says what plays next."""
        playing = self.state.playing
        assert playing is not None
        self.state.playing = None
        self._carry_out(self.engine.finished(playing.occurrence.key, at, outcome, reason), at)

    def _reload(self) -> None:
        if self.schedule.reload(self.store):
            now = self.wall()
            self._carry_out(self.engine.replace_items(self.schedule.items, now), now)

    # -- actions --------------------------------------------------------------------------------

    def _carry_out(self, actions: list[Action], now: datetime) -> None:
        for action in actions:
            if isinstance(action, Start):
                self._start(action, now)
            elif isinstance(action, Interrupt):
                self._interrupt(action, now)
            elif isinstance(action, Record):
                started = self.started_at.pop(action.occurrence.key, None)
                ended = now if action.outcome in ENDED_OUTCOMES else None
                self._record(action.occurrence, action.outcome, action.reason, actual=started, ended=ended)

    def _start(self, action: Start, now: datetime) -> None:
        occurrence = action.occurrence
        item = occurrence.item
        path = self.schedule.audio_path(item)
        if action.late_by > timedelta(0):
            logger.info(
                "%s starts %.3fs late (within catch-up)", occurrence.key, action.late_by.total_seconds()
            )
        playing = self.state.playing = Playing(occurrence, now)
        problem = unreadable(path)
        if problem:  # refuse before the player sees it, so whatever plays (FM) goes on
            logger.error("%s cannot play: %s", occurrence.key, problem)
            self.store.add_event("error", "play_failed", f"{item.id}: {problem}")
            self._finish(Outcome.FAILED, problem, now)
            return
        volume = item.volume if item.volume is not None else self.config.audio.volume
        # start timing: play first, then the play-log row, whose synchronous write would delay it
        playing.asked_at = self.wall()
        self.player.play(occurrence.key, path, volume)
        self._record(occurrence, None, "")

    def _interrupt(self, action: Interrupt, now: datetime) -> None:
        playing = self.state.playing
        if playing is None or playing.occurrence.key != action.occurrence.key:
            return
        self.state.playing = None
        self.player.stop()  # the engine's Record of the interruption follows

    def _record(
        self,
        occurrence: Occurrence,
        outcome: Outcome | None,
        reason: str,
        *,
        actual: datetime | None = None,
        ended: datetime | None = None,
    ) -> None:
        """Write the play-log row of ``occurrence``; outcome None means it is playing now."""
        item = occurrence.item
        self.store.record_play(
            PlayRecord(
                key=occurrence.key,
                item_id=item.id,
                audio=item.audio,
                level=item.level.name.lower(),
                zones=tuple(sorted(item.resolved_zones(self.all_zones))),
                scheduled_start=iso(occurrence.start) or "",
                actual_start=iso(actual),
                ended=iso(ended),
                outcome=outcome.value if outcome is not None else "playing",
                reason=reason,
            )
        )

    def status(self) -> dict[str, Any]:
        return self.board.snapshot()
