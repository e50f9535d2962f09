"""The agent's main loop: one thread owns all state.

Drivers (libVLC, gpiozero, the FM receiver) and the control socket run on their own threads and
only post events to :attr:`Agent.events`.  Each pass of the loop asks the pure scheduler what is
due, asks the FM policy whether to relay, lets the pure output plan (``agent.output_plan``) decide
relays, player and LED together, carries the plan out, and publishes a status snapshot.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.clock_trust import ClockState, ClockTrust
from agent.commands import Execute, Pending, Result
from agent.config import Config
from agent.events import EventKind
from agent.health import HealthFacts, HealthMonitor
from agent.link_state import StateFacts, clock_source  # [central link]
from agent.output_plan import (
    SILENCE,
    OutputPlan,
    PlanInputs,
    PlayItem,
    RelayFm,
    Target,
    Upcoming,
    plan_outputs,
)
from agent.play_log import PlayLog
from agent.schedule_source import CENTRAL_COMMAND_PREFIX, COMMAND_ORIGIN, TEST_PREFIX, Schedule
from agent.start_timing import StartTimer
from agent.status import StatusBoard
from agent.store import Store, iso
from agent.systemd_notify import Notifier
from drivers.gpio import AmplifierRelays, StatusLed
from drivers.player import Player, PlayerEvent, unreadable
from foundation.units import in_clock_windows
from protocol.messages import Playing  # [central link] the state message's "playing"
from scheduler.engine import Action, Engine, Interrupt, Queued, Record, Start
from scheduler.items import Item, Level, Outcome
from scheduler.recurrence import Occurrence

if TYPE_CHECKING:  # the FM stack (numpy, scipy) is imported only when fm.backend is set
    from agent.central_sync import CentralSync  # [central link]
    from agent.fm_relay import FmRelay
    from agent.link import Link  # [central link]

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0  # the loop runs at least this often (clock trust, watchdog, status)
WATERMARK_EVERY = timedelta(seconds=10)
DONE_KEYS_WINDOW = timedelta(hours=48)
PRUNE_EVERY = timedelta(hours=1)
FM_PAUSE = timedelta(minutes=30)  # `loa stop` during an FM relay silences FM this long
VOLUME_KEY = "audio.volume"  # [central link] the volume set by set_volume
IMMINENT = timedelta(seconds=3)  # [central link] no manifest is put in force this close to a start
STEP_BACK = timedelta(seconds=2)  # a wall clock earlier than the last pass by more is a step back
NEVER_PLAYED = frozenset({Outcome.MISSED, Outcome.SKIPPED})  # [central link] no "played 3 times"


class Reload:
    """Re-read the local schedule file (SIGHUP)."""


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
        schedule: Schedule,
        notifier: Notifier | None = None,
        events: queue.Queue[object] | None = None,
        fm: FmRelay | None = None,
        wall: Callable[[], datetime] = utc_now,
        health: HealthMonitor | None = None,
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
        self.all_zones = frozenset(config.all_zones)
        self.play_log = PlayLog(store, schedule, self.all_zones)
        self.clock_state = ClockState(False, "not checked yet")
        self.current: Target = SILENCE  # what the player was last told to play
        self.plan: OutputPlan | None = None
        self.closed_since: dict[str, datetime] = {}
        self.fm_released_at: datetime | None = None
        self.fm_paused_until: datetime | None = None
        self.link: Link | None = None  # [central link] set by the daemon when central: is configured
        self.central: CentralSync | None = None  # [central link] the manifest and the audio cache
        saved_volume = store.get_state(VOLUME_KEY)  # [central link] set_volume, kept across restarts
        self.volume = saved_volume if isinstance(saved_volume, int) else config.audio.volume
        self.relay_test: tuple[frozenset[str], datetime, Pending] | None = None  # [central link]
        self.awaiting: dict[str, Pending] = {}  # occurrence key -> a command waiting for its start
        self.repeats: dict[str, int] = {}  # [central link] a command item's id -> times its file plays
        self._deferred: list[object] = []  # [central link] manifests held back until a start is past
        self.passes = 0  # main-loop passes made; tests wait on it instead of sleeping
        self._started_mono = time.monotonic()
        # start timing: play() is called the player's measured latency before each start
        latency = player.start_latency
        self.start_timer = StartTimer(None if latency is None else timedelta(seconds=latency))
        self._resumed = False
        self._watermark_saved: datetime | None = None
        self._pruned: datetime | None = None
        self._last_pass: datetime | None = None
        self.engine = self._make_engine()
        # [health] the daemon passes one with the GPIO inputs and the modem; else board and agent only
        self.health = health if health is not None else HealthMonitor(config, store)
        self.board.publish(self)  # the control socket answers from the first instant

    # -- wiring ---------------------------------------------------------------------------------

    def post(self, event: object) -> None:
        """Hand an event to the main loop; safe from any thread."""
        self.events.put(event)

    @property
    def playing(self) -> Occurrence | None:
        return self.engine.playing

    def _make_engine(self) -> Engine:
        """The scheduler engine.  It does not tick before the clock is trusted; then
        :meth:`_resume_engine` hands it what the previous run left."""
        gpio = self.config.gpio
        return Engine(
            self.schedule.items,
            self.config.device.timezone,
            all_zones=self.all_zones,
            catch_up=self.config.schedule.catch_up,
            max_delay=self.config.schedule.max_delay,
            preroll=gpio.preroll,
            postroll=gpio.postroll,
        )

    def _resume_engine(self) -> None:
        """Carry over the previous run's watermark, handled and waiting occurrences.

        Only a trusted clock may judge the saved watermark, so this happens when the clock first
        becomes trusted.  The time this run spent on an untrusted clock is measured on the
        monotonic clock, which no clock step moves.
        """
        now = self.wall()
        untrusted = now - timedelta(seconds=time.monotonic() - self._started_mono)
        self.engine.resume(
            watermark=self._saved_watermark(now),
            done_keys=self.store.handled_keys(iso(now - DONE_KEYS_WINDOW) or ""),
            waiting=[record.key for record in self.store.waiting_plays()],
            untrusted_since=untrusted if now - untrusted > timedelta(seconds=5) else None,
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
            self.store.add_event(EventKind.WATERMARK_DROPPED, f"saved watermark {saved} is in the future")
            return None
        return watermark

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        self.play_log.close_unfinished()
        self.store.add_event(EventKind.AGENT_STARTED, f"device {self.config.device.id}")
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
                self._handle_queued()
            self._iterate()
        self._shutdown()

    def _handle_queued(self, limit: int = 100) -> None:
        """Events that came meanwhile share the next pass (a burst of broker acknowledgements while
        a spooled backlog goes out would otherwise make a whole pass each)."""
        for _ in range(limit):
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if event is not None:
                self._handle(event)

    def _timeout(self) -> float:
        now = self.wall()
        wakes = [self.plan.wake_at if self.plan is not None else None]
        if self.clock_state.trusted:
            wakes.append(self.engine.next_wakeup(now))
        wake = min((moment for moment in wakes if moment is not None), default=None)
        if wake is None:
            return HEARTBEAT
        return max(0.0, min(HEARTBEAT, (wake - now).total_seconds()))

    def _iterate(self) -> None:
        now = self.wall()
        self._check_clock(now)
        self._check_step_back(now)
        self.store.retry_writes()
        if self._resumed:
            self.engine.start_lead = self.start_timer.lead()
            self._carry_out(self.engine.tick(now, self._hold()), now)
            for key, reason in self.engine.orphans():
                self.play_log.close_orphan(key, reason)
        self.health.poll(self._health_facts(now), now)  # [health]
        self._apply(self._plan(now), now)
        if self._resumed and self.clock_state.trusted:
            self._prepare_next(now)
        if self.link is not None:  # [central link] send the outbox and the retained state
            self.link.tick(now, self.state_facts(now))
        if self._deferred and not self._start_imminent():  # [central link] a manifest held back
            self._on_central(self._deferred.pop(0))
        self._save_watermark(now)
        self._prune(now)
        self.notifier.watchdog()
        self.board.publish(self)
        self.passes += 1

    def _check_step_back(self, now: datetime) -> None:
        """A clock stepped back is said plainly: what it passed over plays as the clock gets there
        (unless it already played: the engine remembers what it handled)."""
        last = self._last_pass
        self._last_pass = now
        if last is not None and now < last - STEP_BACK:
            local = "%Y-%m-%d %H:%M:%S"
            tz = self.config.device.timezone
            detail = f"clock stepped back from {last.astimezone(tz):{local}} to {now.astimezone(tz):{local}}"
            logger.warning("%s", detail)
            self.store.add_event(EventKind.CLOCK_STEPPED_BACK, detail)

    def _hold(self) -> str | None:
        """Why nothing new may start now, or None."""
        if self.clock_state.trusted:
            return None
        return f"clock not trusted ({self.clock_state.reason})"

    def _plan(self, now: datetime) -> OutputPlan:
        playing = self.engine.playing
        trusted = self.clock_state.trusted
        ticking = self._resumed and trusted
        fm_wanted = False
        testing = self._relay_test_zones(now)  # [central link] relay_test
        if self.fm is not None:
            paused = self.fm_paused_until is not None and now < self.fm_paused_until
            busy = playing is not None or bool(self.engine.queue)
            link_up = self.link is None or self.link.up  # [central link]
            decision = self.fm.decide(now, clock_trusted=trusted, scheduled_busy=busy, link_up=link_up)
            fm_wanted = decision.relay and not paused
        return plan_outputs(
            PlanInputs(
                now=now,
                clock_trusted=trusted,
                item=PlayItem(playing.key) if playing is not None else None,
                item_zones=playing.item.resolved_zones(self.all_zones) if playing else frozenset(),
                scheduled_zones=(self.engine.zones_wanted(now, preroll=False) if ticking else frozenset())
                | testing,
                upcoming=self._upcoming(now) if ticking else (),
                zones_in_use=self.engine.zones_in_use(now) | testing,
                fm_wanted=fm_wanted,
                fm_zones=self.fm.zones if self.fm is not None else frozenset(),
                fm_released_at=self.fm_released_at,
                closed_since=self.closed_since,
                current=self.current,
                settle=self.config.gpio.preroll,
                postroll=self.config.gpio.postroll,
                faults=self._faults(),
                link_up=self.link is None or self.link.up,  # [central link] the LED's no-link code
                alarms=self.health.active_codes,  # [health]
            )
        )

    def _upcoming(self, now: datetime) -> tuple[Upcoming, ...]:
        """The items in their pre-roll, each with whether its audio is there (a stat, mostly)."""
        return tuple(
            Upcoming(occ.item.resolved_zones(self.all_zones), self._audio_ready(occ.item))
            for occ in self.engine.in_preroll(now)
        )

    def _health_facts(self, now: datetime) -> HealthFacts:
        """[health] What only the loop knows, for the health monitor's alarms."""
        hours = self.config.fm.relay_hours  # no carrier matters only when FM should be relayed
        wanted = in_clock_windows(hours, now.astimezone(self.config.device.timezone).time())
        return HealthFacts(
            clock_trusted=self.clock_state.trusted,
            clock_reason=self.clock_state.reason,
            player_fault=self.player.fault(),
            store_fault=self.store.fault,
            fm_no_carrier=self.fm is not None and wanted and self.fm.last_decision.reason == "no_carrier",
        )

    def _faults(self) -> tuple[str, ...]:
        faults = []
        player_fault = self.player.fault()
        if player_fault is not None:
            faults.append(f"audio player: {player_fault}")
        if self.store.fault is not None:
            faults.append(
                f"storage: {self.store.fault}; records kept in memory ({self.store.buffer.pending})"
            )
        if self.fm is not None and self.fm.reported_fault is not None:
            faults.append(f"FM: {self.fm.reported_fault.error}")
        return tuple(faults)

    def _apply(self, plan: OutputPlan, now: datetime) -> None:
        """Carry out the plan: relays first (audio never starts into open relays), then the player."""
        first = self.plan is None
        self.plan = plan
        changed = self.relays.apply(plan.zones) or first
        for zone in plan.zones:
            self.closed_since.setdefault(zone, now)
        for zone in set(self.closed_since) - plan.zones:
            del self.closed_since[zone]
        if changed:  # what the relays are, in the config's order (loa status after a crash shows it)
            self.store.put_state("relays", {"at": iso(now), "closed": self.relays.states()})
        self._drive_player(plan.player, now)
        if self.led is not None:
            self.led.show(plan.led)

    def _drive_player(self, target: Target, now: datetime) -> None:
        previous = self.current
        if target == previous:
            return
        self.current = target
        if isinstance(previous, RelayFm) and self.fm is not None:
            self.fm_released_at = now
            self.fm.end(now, replaced=isinstance(target, PlayItem) and self.fm.uses_player)
        if isinstance(target, PlayItem):
            self._play_item(target.key, now)
        elif isinstance(target, RelayFm) and self.fm is not None:
            self.fm.begin(now)
        elif isinstance(previous, PlayItem):
            self.player.stop()

    def _play_item(self, key: str, now: datetime) -> None:
        playing = self.engine.playing
        assert playing is not None and playing.key == key
        item = playing.item
        volume = item.volume if item.volume is not None else self.volume  # [central link] set_volume
        asked = self.wall()
        self.player.play(key, self.schedule.audio_path(item), volume, self.repeats.get(item.id, 1))
        # The row after play(): its synchronous write would otherwise delay the start.
        self.play_log.asked(playing, asked)

    def _check_clock(self, now: datetime) -> None:
        state = self.clock.check()
        if state.trusted != self.clock_state.trusted:
            logger.log(
                logging.INFO if state.trusted else logging.WARNING,
                "clock %s: %s",
                "trusted" if state.trusted else "NOT trusted",
                state.reason,
            )
            kind = EventKind.CLOCK_TRUSTED if state.trusted else EventKind.CLOCK_UNTRUSTED
            self.store.add_event(kind, state.reason)
        self.clock_state = state
        if state.trusted and not self._resumed:
            self._resume_engine()
            self._resumed = True

    def _prepare_next(self, now: datetime) -> None:
        """Start timing: hand the next occurrence's file to the player when its relays close."""
        occurrence = self.start_timer.to_prepare(self.engine.upcoming(now, 1), now, self.config.gpio.preroll)
        if occurrence is not None:
            self.player.prepare(occurrence.key, self.schedule.audio_path(occurrence.item))

    def _save_watermark(self, now: datetime) -> None:
        mark = self.engine.watermark
        saved = self._watermark_saved
        if mark is None or not self.clock_state.trusted:
            return
        if saved is not None and now - saved < WATERMARK_EVERY:
            return
        self.store.put_state("watermark", iso(mark))
        self.store.put_state("alive_at", iso(now))  # where close_unfinished ends a row cut by a power cut
        self._watermark_saved = now

    def _prune(self, now: datetime) -> None:
        # Ages are measured on the wall clock: one years ahead would delete rows the box must keep.
        if not self.clock_state.trusted:
            return
        if self._pruned is not None and now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        removed = self.store.prune(now)
        if any(removed.values()):
            logger.info("retention: removed %s", removed)

    def _shutdown(self) -> None:
        playing = self.engine.playing
        now = self.wall()
        if playing is not None:
            self.player.stop()
            self._carry_out(self.engine.stop(now, "agent stopped"), now, interrupt=False)
        if self.fm is not None and isinstance(self.current, RelayFm):
            self.fm.end(now, replaced=False)
        self.current = SILENCE
        mark = self.engine.watermark
        if mark is not None and self.clock_state.trusted:
            self.store.put_state("watermark", iso(mark))
        self.relays.apply(frozenset())
        self.store.put_state("relays", {"at": iso(now), "closed": self.relays.states()})
        self.store.add_event(EventKind.AGENT_STOPPED, "stopped")

    # -- events ---------------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        if isinstance(event, PlayerEvent) and event.fault:  # the player stalled or hung, not the file
            self.store.add_event(EventKind.PLAYER_FAULT, f"{event.token}: {event.detail}")
        if isinstance(event, PlayerEvent) and self.fm is not None and event.token == self.fm.active_token:
            self._on_fm_player(event)
        elif isinstance(event, PlayerEvent):
            self._on_player(event)
        elif self.fm is not None and self.fm.is_event(event):
            self.fm.on_fm_event(event)  # type: ignore[arg-type]
        elif self.link is not None and self.link.is_event(event):  # [central link]
            self.link.on_event(event, self.wall())
        elif self.central is not None and self.central.is_event(event):  # [central link]
            self._on_central(event)
        elif isinstance(event, Execute):
            self.execute(event.pending)
        elif isinstance(event, Reload):
            self._reload(None)
        else:
            logger.warning("ignoring unknown event %r", event)

    def _on_fm_player(self, event: PlayerEvent) -> None:
        assert self.fm is not None
        now = self.wall()
        self.fm.on_player_event(event, now)
        if event.kind != "playing" and isinstance(self.current, RelayFm):
            self.current = SILENCE
            self.fm_released_at = now

    def _on_player(self, event: PlayerEvent) -> None:
        playing = self.engine.playing
        if playing is None or event.token != playing.key or self.current != PlayItem(event.token):
            logger.debug("event for a playback no longer current: %s", event)
            return
        at = datetime.fromtimestamp(event.wall, UTC)
        if event.kind == "playing":
            asked = self.play_log.asked_at.get(playing.key)
            if asked is not None:
                self.start_timer.observe(asked, at)
            self.play_log.started(playing, at)
            waiting = self.awaiting.pop(playing.key, None)
            if waiting is not None:
                times = self.repeats.get(playing.item.id, 1)
                what = f"playing {playing.item.audio}" + (f" {times} times" if times > 1 else "")
                waiting.resolve(Result.DONE, what, key=playing.key)
            return
        self.current = SILENCE
        outcome = {"ended": Outcome.COMPLETED, "error": Outcome.FAILED}.get(event.kind, Outcome.INTERRUPTED)
        if outcome is Outcome.FAILED:
            self.store.add_event(EventKind.PLAY_FAILED, f"{playing.item.id}: {event.detail}")
        self._carry_out(self.engine.finished(playing.key, at, outcome, event.detail, self._hold()), at)

    def _reload(self, pending: Pending | None) -> None:
        result = self.schedule.reload(self.store)
        if result.accepted:
            self._schedule_changed()
        if pending is None:
            return
        origin = result.origin
        if result.accepted:
            pending.resolve(Result.DONE, "", items=len(origin.items), version=origin.version)
        else:
            pending.resolve(Result.REJECTED, "schedule file refused", problems=list(result.problems))

    def _on_central(self, event: object) -> None:
        """[central link] A manifest is put in force between starts: its store transaction and the
        engine's new items take a moment of this loop (docs/BENCHMARKS.md), which must not delay a
        start, so one that arrives just before a start waits for the next pass after it."""
        assert self.central is not None
        if self.central.changes_schedule(event) and self._start_imminent():
            logger.info("a start is imminent: the new manifest is put in force after it")
            self._deferred.append(event)
            return
        if self.central.on_event(event):
            self._schedule_changed()

    def _start_imminent(self) -> bool:
        if not self._resumed:
            return False
        now = self.wall()
        upcoming = self.engine.upcoming(now, 1)
        return bool(upcoming) and upcoming[0].start - now <= IMMINENT

    def _schedule_changed(self) -> None:
        """Hand the engine the schedule's items after an origin changed (a reload, a manifest)."""
        now = self.wall()
        if self._resumed:
            self._carry_out(self.engine.replace_items(self.schedule.items, now, self._hold()), now)
        else:  # the engine does not tick before the clock is first trusted
            self.engine = self._make_engine()

    # -- commands (the front door's main-loop half) ----------------------------------------------

    def execute(self, pending: Pending) -> None:
        """Carry out a command the handler accepted; resolve its answer now or when it happens."""
        command = pending.command
        self.store.add_event(EventKind.COMMAND, f"{command.id} {command.name} from {command.origin}")
        logger.info(
            "command %s: %s %s from %s", command.id, command.name, dict(command.params), command.origin
        )
        if command.name == "reload":
            self._reload(pending)
        elif command.name == "play":
            self._command_play(pending)
        elif command.name == "stop":
            self._command_stop(pending)
        elif command.name == "set_volume":  # [central link]
            self._command_volume(pending)
        elif command.name == "relay_test":  # [central link]
            self._command_relay_test(pending)
        elif command.name == "test_tone":
            self._command_test_tone(pending)
        else:
            pending.resolve(Result.REJECTED, f"the agent cannot carry out {command.name!r}")
        if pending.done:
            self._iterate()

    def _command_play(self, pending: Pending) -> None:
        command, now = pending.command, self.wall()
        params = command.params
        # [central link] a central command's item is told apart by its id (the play log's origin)
        prefix = CENTRAL_COMMAND_PREFIX if command.origin == "central" else f"{COMMAND_ORIGIN}-"
        level = Level[params["level"].upper()]
        zones = frozenset(params["zones"]) or None
        # [central link] cached audio is named by its sha256 (the play log says it) when the
        # schedule resolves that name to this very file; a volume given applies to this item only
        item = Item(f"{prefix}{command.id}", params["file"], level, zones, params.get("volume"), at=now)
        named = replace(item, audio=params["sha256"]) if params.get("sha256") else item
        if self.schedule.audio_path(named) == Path(params["file"]):
            item = named
        if params.get("repeat", 1) > 1:
            self.repeats[item.id] = params["repeat"]
        self._inject(pending, item, now)

    def _command_test_tone(self, pending: Pending) -> None:
        """A crew's test tone plays as a normal item (origin ``local-test``) into silence or FM; it
        never queues behind, nor cuts off, what the schedule or a command plays."""
        command, now = pending.command, self.wall()
        playing = self.engine.playing
        if playing is not None:
            level = playing.item.level.name.lower()
            pending.resolve(Result.REJECTED, f"not now: '{playing.item.id}' [{level}] is playing")
            return
        if self.engine.queue or self.relay_test is not None:
            pending.resolve(Result.REJECTED, "not now: something waits to play or is being tested")
            return
        zones = frozenset(command.params["zones"]) or None
        item = Item(f"{TEST_PREFIX}{command.id}", command.params["file"], Level.NORMAL, zones, at=now)
        self._inject(pending, item, now)

    def _inject(self, pending: Pending, item: Item, now: datetime) -> None:
        """Play a command's item now, as a scheduled one plays: relays with preroll first, a
        play-log row, and the answer when the player says "playing"."""
        if not self.clock_state.trusted:
            pending.resolve(
                Result.REJECTED, f"nothing starts on an untrusted clock: {self.clock_state.reason}"
            )
            return
        key = Occurrence(item, now).key
        self.awaiting[key] = pending
        self._carry_out(self.engine.inject(item, now), now)
        playing = self.engine.playing
        if key in self.awaiting and (playing is None or playing.key != key):
            busy = f"'{playing.item.id}' is playing" if playing is not None else "waiting for the speakers"
            pending.accept(f"queued: {busy}", key=key)
        elif key in self.awaiting:
            pending.accept("relays closing", key=key)

    def _command_volume(self, pending: Pending) -> None:
        """[central link] The player cannot change a playback's volume: it applies from the next start."""
        self.volume = int(pending.command.params["volume"])
        self.store.put_state(VOLUME_KEY, self.volume)
        later = " (what plays now keeps its volume)" if self.engine.playing is not None else ""
        pending.resolve(Result.DONE, f"volume {self.volume} from the next start{later}", volume=self.volume)

    def _command_relay_test(self, pending: Pending) -> None:
        """[central link] Close the zones' relays for a while, only when nothing plays or waits."""
        params, now = pending.command.params, self.wall()
        busy = self.engine.playing is not None or bool(self.engine.queue) or self.current != SILENCE
        if busy or self.relay_test is not None:
            pending.resolve(Result.REJECTED, "busy: something plays, waits or is being tested")
            return
        zones = frozenset(params["zones"])
        self.relay_test = (zones, now + timedelta(seconds=params["seconds"]), pending)
        pending.accept(f"relays {', '.join(sorted(zones))} closed for {params['seconds']} s")

    def _relay_test_zones(self, now: datetime) -> frozenset[str]:
        """[central link] The zones a relay test holds closed; it ends on time or when audio comes."""
        if self.relay_test is None:
            return frozenset()
        zones, until, pending = self.relay_test
        if now < until and self.engine.playing is None and not isinstance(self.current, RelayFm):
            return zones
        self.relay_test = None
        cut = "" if now >= until else " (cut short: audio came)"
        pending.resolve(Result.DONE, f"relays {', '.join(sorted(zones))} tested{cut}", zones=sorted(zones))
        return frozenset()

    def _command_stop(self, pending: Pending) -> None:
        """Silence now, and no command sent before this stop starts after it: the command plays
        waiting behind what plays are cancelled first (so none starts in between), then what plays
        is cut off.  The schedule's own items that wait play after it, as they would have."""
        command, now = pending.command, self.wall()
        cancelled = self._cancel_waiting_commands(f"stop ({command.origin} command {command.id})", now)
        playing = self.engine.playing
        detail: dict[str, Any] = {"cancelled_plays": cancelled} if cancelled else {}
        if playing is not None:
            reason = f"stopped by a {command.origin} command ({command.id})"
            self._carry_out(self.engine.stop(now, reason), now)
            what = f"stopped '{playing.item.id}'"
            detail["item"] = playing.item.id
        elif isinstance(self.current, RelayFm) and self.fm is not None:
            self.fm_paused_until = now + FM_PAUSE
            local = self.fm_paused_until.astimezone(self.config.device.timezone)
            what = f"FM relay paused until {local:%H:%M}"
        else:
            what = "nothing was playing"
        if cancelled:
            what += f"; cancelled {len(cancelled)} waiting command play{'s' if len(cancelled) > 1 else ''}"
        pending.resolve(Result.DONE, what, **detail)

    def _cancel_waiting_commands(self, stop: str, now: datetime) -> list[str]:
        """The item ids of the command plays (central or local, test tones too: the engine knows
        them as injected) that waited and never will play; each is logged ``skipped`` and its
        command answered ``rejected`` as cancelled, as a play whose audio was still being fetched
        is (agent/commands.py)."""
        reason = f"cancelled: {stop} came while it waited to play"
        records = self.engine.cancel_injected(reason)
        for record in records:
            waiting = self.awaiting.pop(record.occurrence.key, None)
            if waiting is not None:
                waiting.resolve(Result.REJECTED, reason, cancelled=True)
            logger.info("%s %s", record.occurrence.key, reason)
        self._carry_out([*records], now)
        return [record.occurrence.item.id for record in records]

    # -- actions --------------------------------------------------------------------------------

    def _carry_out(self, actions: list[Action], now: datetime, *, interrupt: bool = True) -> None:
        queued = []
        for action in actions:
            if isinstance(action, Queued):
                queued.append(action.occurrence)
            elif isinstance(action, Start):
                self._start(action, now)
            elif isinstance(action, Interrupt) and interrupt:
                logger.info("%s interrupted: %s", action.occurrence.key, action.reason)
            elif isinstance(action, Record):
                times = self.repeats.pop(action.occurrence.item.id, 1)  # [central link] emergency repeat
                if times > 1 and action.outcome not in NEVER_PLAYED:  # one row for all the repeats
                    note = f"played {times} times back to back"
                    action = replace(action, reason=f"{action.reason}; {note}" if action.reason else note)
                self.play_log.record(action, now)
                waiting = self.awaiting.pop(action.occurrence.key, None)
                if waiting is not None:
                    waiting.resolve(Result.REJECTED, f"{action.outcome.value}: {action.reason}")
        still_waiting = {occurrence.key for occurrence in self.engine.queue}
        for occurrence in queued:  # one that started at once needs no "waiting" row
            if occurrence.key in still_waiting:
                self.play_log.waiting(occurrence)

    def _start(self, action: Start, now: datetime) -> None:
        occurrence = action.occurrence
        if action.late_by > timedelta(0):
            logger.info(
                "%s starts %.3fs late (within catch-up)", occurrence.key, action.late_by.total_seconds()
            )
        problem = self._audio_problem(occurrence.item)
        if problem:  # refused before the player sees it, so whatever plays (FM) goes on
            logger.error("%s cannot play: %s", occurrence.key, problem)
            self.store.add_event(EventKind.PLAY_FAILED, f"{occurrence.item.id}: {problem}")
            self._carry_out(
                self.engine.finished(occurrence.key, now, Outcome.FAILED, problem, self._hold()), now
            )
            return

    def _audio_problem(self, item: Item) -> str | None:
        """Why an item's audio cannot start: a central item's not in the verified cache, or a file
        the player could not read."""
        if self.central is not None:  # [central link]
            problem = self.central.audio_problem(item)
            if problem:
                return problem
        return unreadable(self.schedule.audio_path(item))

    def _audio_ready(self, item: Item) -> bool:
        """Whether an item's audio is there to play, without side effects (the pre-roll asks)."""
        if self.central is not None and not self.central.audio_ready(item):  # [central link]
            return False
        return not unreadable(self.schedule.audio_path(item))

    def status(self) -> dict[str, Any]:
        return self.board.snapshot()

    def state_facts(self, now: datetime) -> StateFacts:
        """[central link] What the retained ``state`` reports (agent/link_state.py)."""
        playing, volume = self.engine.playing, self.volume
        if playing is not None:
            item = playing.item
            since = self.play_log.since(playing) or playing.start  # not `now`: it would change each pass
            zones = tuple(sorted(item.resolved_zones(self.all_zones)))
            origin = self.schedule.origin_of(item)
            now_playing = Playing("item", zones, since, item.id, item.level.name.lower(), origin)
            volume = item.volume if item.volume is not None else volume
        elif isinstance(self.current, RelayFm) and self.fm is not None:
            started = min((self.closed_since.get(zone, now) for zone in self.fm.zones), default=now)
            now_playing = Playing("fm", tuple(sorted(self.fm.zones)), started)
        else:
            now_playing = None
        relays_on = tuple(sorted(self.plan.zones)) if self.plan is not None else ()
        schedules = {origin.name: origin.version for origin in self.schedule.origins if origin.version}
        trusted, reason = self.clock_state.trusted, self.clock_state.reason
        return StateFacts(now_playing, relays_on, volume, schedules, trusted, clock_source(trusted, reason))
