"""The scheduling state machine: given ``now``, decide what starts, waits, is cut off or is missed.

The engine never reads a clock. The agent calls :meth:`Engine.tick` whenever it wakes (at the latest
at :meth:`Engine.next_wakeup`), carries out the returned actions in order, powers the zones of
:meth:`Engine.zones_wanted`, and persists every ``Record`` plus ``watermark`` and ``done_keys``.
The rules are described, with examples, in docs/SCHEDULING.md.

``start_lead`` lets the agent start an occurrence that much before its time, because a player
takes a few milliseconds from ``play`` to sound: an occurrence is due once ``start <= now +
start_lead``, and ``next_wakeup`` wakes the agent at ``start - start_lead``.  ``Start.late_by``
is still measured from the scheduled start (and is never negative).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from foundation.units import format_duration
from scheduler.actions import Action, Interrupt, Outcome, Queued, Record, Start
from scheduler.items import Item
from scheduler.recurrence import Occurrence, item_starts
from scheduler.relay_plan import RelayHold, wanted_zones
from scheduler.timeline import Timeline

__all__ = ["Action", "Engine", "Interrupt", "Outcome", "Queued", "Record", "Start"]

MAX_START_LEAD = timedelta(seconds=1)  # a player slower than this to start is broken, not early
TICK = timedelta(microseconds=1)  # the resolution of datetime: (a, b] == [a + TICK, b + TICK)
MISSED_LOOKBACK = timedelta(hours=24)  # older misses after downtime are not logged one by one
DONE_HORIZON = timedelta(hours=48)  # how long handled keys are remembered
UPCOMING_WITHIN = timedelta(days=40)  # how far ahead upcoming() looks
# next_wakeup() expands the timeline's next chunk ahead of time only when nothing is due this soon,
# so the expansion never delays a start.
PREFETCH_GAP = timedelta(seconds=5)


def _utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"scheduler needs an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _span(duration: timedelta) -> str:
    """A duration in whole seconds, as reasons in the play log say it (``3min12s``)."""
    return format_duration(duration, whole_seconds=True)


def _key_start(key: str) -> datetime | None:
    try:
        return _utc(datetime.fromisoformat(key.rpartition("@")[2]))
    except ValueError:
        return None


class Engine:
    """Decides, for a schedule and a sequence of ``now`` values, what plays and what is logged."""

    def __init__(
        self,
        items: Iterable[Item],
        tz: ZoneInfo,
        *,
        all_zones: frozenset[str],
        catch_up: timedelta = timedelta(seconds=5),
        max_delay: timedelta = timedelta(minutes=15),
        preroll: timedelta = timedelta(seconds=2),
        postroll: timedelta = timedelta(seconds=10),
        watermark: datetime | None = None,
        done_keys: Iterable[str] = (),
        untrusted_since: datetime | None = None,
        waiting: Iterable[str] = (),
        start_lead: timedelta = timedelta(0),
    ) -> None:
        self._tz = tz
        self._timeline = Timeline(items, tz)
        self._all_zones = frozenset(all_zones)
        self._catch_up, self._max_delay, self._preroll = catch_up, max_delay, preroll
        self._playing: Occurrence | None = None
        self._playing_since: datetime | None = None
        self._queue: list[Occurrence] = []
        # waiting keys whose item is gone from the schedule: the agent closes their rows itself
        self._orphans: list[tuple[str, str]] = []
        self._injected: set[str] = set()
        self._hold = RelayHold(postroll)
        self._lead = timedelta(0)
        self.start_lead = start_lead
        self.resume(
            watermark=watermark, done_keys=done_keys, waiting=waiting, untrusted_since=untrusted_since
        )

    def resume(
        self,
        *,
        watermark: datetime | None,
        done_keys: Iterable[str] = (),
        waiting: Iterable[str] = (),
        untrusted_since: datetime | None = None,
    ) -> None:
        """Carry over what the previous run left (the constructor's arguments of the same names),
        before the first tick: the agent learns them only once its clock is trusted, and its
        timeline, already built, is kept."""
        if self._playing is not None or self._queue:
            raise RuntimeError("resume() is for an engine that has not started anything yet")
        self._watermark = _utc(watermark) if watermark is not None else None
        self._last_now = self._watermark  # the previous tick's now: due is (last now, now]
        self._resumed = watermark is not None  # the first tick explains misses as downtime
        # when this run started on a clock it could not trust: misses after it are not downtime
        self._untrusted_since = _utc(untrusted_since) if untrusted_since is not None else None
        self._done = {key: start for key in done_keys if (start := _key_start(key)) is not None}
        self._done_oldest = min(self._done.values(), default=None)
        self._waiting = tuple(waiting)  # keys the previous run had queued when it stopped

    # -- state the agent reads -------------------------------------------------------------------

    @property
    def playing(self) -> Occurrence | None:
        return self._playing

    @property
    def queue(self) -> list[Occurrence]:
        """Occurrences waiting for the speakers, in the order they would start."""
        return sorted(self._queue, key=lambda occ: occ.priority_key)

    @property
    def watermark(self) -> datetime | None:
        """The latest ``now`` seen; persist it so a restart can tell what was missed."""
        return self._watermark

    def orphans(self) -> list[tuple[str, str]]:
        """(key, reason) of waiting occurrences whose item is no longer in the schedule; taken once."""
        orphans, self._orphans = self._orphans, []
        return orphans

    @property
    def done_keys(self) -> frozenset[str]:
        """Keys of occurrences already started or recorded in the last ``DONE_HORIZON``."""
        return frozenset(self._done)

    @property
    def start_lead(self) -> timedelta:
        """How long before its scheduled start an occurrence is due (0..MAX_START_LEAD)."""
        return self._lead

    @start_lead.setter
    def start_lead(self, lead: timedelta) -> None:
        if not timedelta(0) <= lead <= MAX_START_LEAD:
            raise ValueError(f"start_lead {lead.total_seconds():g} s is outside 0..{MAX_START_LEAD}")
        self._lead = lead

    def upcoming(self, now: datetime, limit: int = 10) -> list[Occurrence]:
        """The next scheduled occurrences not yet due (within ``UPCOMING_WITHIN``), soonest first,
        for status displays; the answer is kept until the frontier passes its first start."""
        lo = self._frontier(_utc(now)) + self._lead + TICK
        if self._watermark is None or self._watermark < lo:
            return list(self._timeline.soonest(lo, limit, UPCOMING_WITHIN))
        # After a backward clock step what lies ahead may have been handled already: not "next".
        ahead = sum(1 for start in self._done.values() if start >= lo)
        found = self._timeline.soonest(lo, limit + ahead, UPCOMING_WITHIN)
        return [occ for occ in found if occ.key not in self._done][:limit]

    # -- events ----------------------------------------------------------------------------------

    def tick(self, now: datetime, hold: str | None = None) -> list[Action]:
        """Process everything that became due by ``now``; return the actions, in order.

        ``hold`` (the clock is not trusted, say) starts nothing new: each occurrence that falls due
        is recorded missed with that reason, queued ones wait (and expire as usual), and what plays
        goes on to its end.
        """
        now = _utc(now)
        previous = self._last_now
        self._observe(now)
        actions = self._take_back_waiting(now) if self._waiting else []
        actions += self._collect_due(previous, now, hold)
        self._resumed = False
        if hold is not None:
            return actions + self._expire_queue(now)
        return actions + self._resolve(now)

    def finished(
        self, key: str, now: datetime, outcome: Outcome, reason: str = "", hold: str | None = None
    ) -> list[Action]:
        """The player ended ``key``; a stale key (already interrupted) only ticks."""
        now = _utc(now)
        actions: list[Action] = []
        if self._playing is not None and self._playing.key == key:
            actions.append(Record(self._playing, outcome, reason))
            self._stop_playing(now)
        return actions + self.tick(now, hold)

    def stop(self, now: datetime, reason: str) -> list[Action]:
        """Cut off what plays now (an operator's stop); it is recorded interrupted, not replayed."""
        now = _utc(now)
        if self._playing is None:
            return []
        return self._interrupt(now, reason)

    def cancel_injected(self, reason: str) -> list[Record]:
        """An operator's stop: the injected occurrences (commands) still waiting never start; each is
        recorded skipped with ``reason``.  Scheduled ones keep waiting.  Called before :meth:`stop`,
        so that none of them starts in between."""
        cancelled = [occ for occ in self.queue if occ.key in self._injected]
        self._queue = [occ for occ in self._queue if occ.key not in self._injected]
        return [self._record(occ, Outcome.SKIPPED, reason) for occ in cancelled]

    def replace_items(self, items: Iterable[Item], now: datetime, hold: str | None = None) -> list[Action]:
        """Switch to a new schedule; the playing occurrence continues, queued ones are re-checked."""
        now = _utc(now)
        self._timeline = Timeline(items, self._tz)
        by_id = {item.id: item for item in self._timeline.items}
        actions: list[Action] = []
        kept: list[Occurrence] = []
        for occ in self._queue:
            if occ.key in self._injected:
                kept.append(occ)
                continue
            item = by_id.get(occ.item.id)
            if item is not None and item_starts(item, self._tz, occ.start, occ.start + TICK):
                kept.append(Occurrence(item, occ.start))
            else:
                actions.append(self._record(occ, Outcome.SKIPPED, "removed from the schedule"))
        self._queue = kept
        return actions + self.tick(now, hold)

    def inject(self, item: Item, now: datetime) -> list[Action]:
        """Play ``item`` once, as if scheduled at ``now`` (ad-hoc and emergency commands)."""
        now = _utc(now)
        occ = Occurrence(item, now)
        queued: list[Action] = []
        if not self._known(occ.key):
            self._queue.append(occ)
            self._injected.add(occ.key)
            queued.append(Queued(occ))
        return queued + self.tick(now)

    # -- what the agent must do between events -----------------------------------------------------

    def zones_in_use(self, now: datetime) -> frozenset[str]:
        """Zones of what plays now and of the post-roll holds: what stays powered when nothing new
        may start (an untrusted clock)."""
        now = _utc(now)
        active = [self._playing] if self._playing else []
        return wanted_zones(active, self._hold.held(now), self._all_zones)

    def zones_wanted(self, now: datetime, *, preroll: bool = True) -> frozenset[str]:
        """Zones whose amplifier relays must be closed at ``now``; with ``preroll`` False, without
        those closed ahead of a start (:meth:`in_preroll`, which the agent may judge itself)."""
        now = _utc(now)
        soon = self.in_preroll(now) if preroll else []
        active = [*soon, *self._queue] + ([self._playing] if self._playing else [])
        return wanted_zones(active, self._hold.held(now), self._all_zones)

    def in_preroll(self, now: datetime) -> list[Occurrence]:
        """The occurrences not yet due whose relays close now: they start within ``preroll``."""
        now = _utc(now)
        return self._timeline.between(self._frontier(now) + TICK, now + self._preroll + TICK)

    def next_wakeup(self, now: datetime) -> datetime | None:
        """The earliest instant after the last ``tick`` at which ``tick`` must run again.

        Asked a little after that tick (the agent carries out its actions in between), it may
        return an instant before ``now``: something fell due meanwhile, so tick at once.
        """
        now = _utc(now)
        ticked = self._last_now if self._last_now is not None else now
        candidates = [occ.start + self._max_delay for occ in self._queue] + self._hold.expiries()
        first = self._timeline.first_after(ticked + self._lead)  # the first not yet due
        if first is not None:
            for occ in self._timeline.between(ticked + TICK, max(first, now) + self._preroll + TICK):
                candidates += [occ.start - self._preroll, occ.start - self._lead]
        wake = min((moment for moment in candidates if moment > ticked), default=None)
        if wake is None or wake - now >= PREFETCH_GAP:
            self._timeline.prefetch(max(ticked, now))
        return wake

    # -- internals -------------------------------------------------------------------------------

    def _frontier(self, now: datetime) -> datetime:
        """Occurrences after this instant are still to come; those at or before it were handled."""
        return now if self._last_now is None else max(now, self._last_now)

    def _observe(self, now: datetime) -> None:
        if self._watermark is None or now > self._watermark:
            self._watermark = now
        self._last_now = now
        cutoff = min(self._watermark, now) - DONE_HORIZON
        if self._done_oldest is not None and self._done_oldest < cutoff:  # not on every tick
            self._done = {key: start for key, start in self._done.items() if start >= cutoff}
            self._done_oldest = min(self._done.values(), default=None)
        self._injected &= {occ.key for occ in self._queue}
        self._hold.observe(now)

    def _known(self, key: str) -> bool:
        playing = self._playing is not None and self._playing.key == key
        return playing or key in self._done or any(occ.key == key for occ in self._queue)

    def _collect_due(self, previous: datetime | None, now: datetime, hold: str | None) -> list[Action]:
        """Queue occurrences due in (previous, now + lead]; record as missed those older than catch_up
        (and all of them while ``hold`` says why nothing may start)."""
        if previous is None:
            lo = now - self._catch_up
        elif now > previous:
            lo = max(previous + TICK, now - MISSED_LOOKBACK)
        else:
            # The clock went back: from here occurrences fall due again as the clock reaches them;
            # those already handled are in ``_done`` and never start twice, the others still play.
            return []
        actions: list[Action] = []
        for occ in self._timeline.between(lo, now + self._lead + TICK):
            if self._known(occ.key):
                continue
            if hold is not None:
                actions.append(self._record(occ, Outcome.MISSED, f"not started: {hold}"))
            elif now - occ.start > self._catch_up:
                actions.append(self._record(occ, Outcome.MISSED, self._missed_reason(previous, now, occ)))
            else:
                self._queue.append(occ)
                actions.append(Queued(occ))
        return actions

    def _take_back_waiting(self, now: datetime) -> list[Action]:
        """Occurrences the previous run had queued when it stopped: queued again if they may still
        start, else recorded skipped.  Either way each keeps its one row."""
        actions: list[Action] = []
        by_id = {item.id: item for item in self._timeline.items}
        reason = "the agent stopped while it waited (restart, power cut or crash)"
        for key in self._waiting:
            start, item = _key_start(key), by_id.get(key.rpartition("@")[0])
            if start is None or self._known(key):
                continue
            if item is None:
                self._orphans.append((key, reason))
                continue
            occ = Occurrence(item, start)
            if item_starts(item, self._tz, start, start + TICK) and now - start < self._max_delay:
                self._queue.append(occ)
            else:
                actions.append(self._record(occ, Outcome.SKIPPED, reason))
        self._waiting = ()
        return actions

    def _missed_reason(self, previous: datetime | None, now: datetime, occ: Occurrence) -> str:
        assert previous is not None  # without a watermark only catch_up is looked back
        if self._resumed:
            local = "%Y-%m-%d %H:%M:%S"
            since, until = previous.astimezone(self._tz), now.astimezone(self._tz)
            untrusted = self._untrusted_since
            if untrusted is not None and untrusted < now:
                if occ.start >= untrusted:
                    start = untrusted.astimezone(self._tz)
                    return f"clock was not trusted from {start:{local}} to {until:{local}}"
                until = max(untrusted, previous).astimezone(self._tz)
            return f"agent was not running from {since:{local}} to {until:{local}}"
        return f"clock jumped forward {_span(now - previous)} (or the agent stalled)"

    def _resolve(self, now: datetime) -> list[Action]:
        """Drop queued occurrences that waited too long, then start or pre-empt with the best one."""
        actions = self._expire_queue(now)
        if not self._queue:
            return actions
        best = min(self._queue, key=lambda occ: occ.priority_key)
        if self._playing is not None:
            if best.item.level <= self._playing.item.level:
                return actions
            actions += self._interrupt(now, f"pre-empted by {best.item.level.name.lower()} '{best.item.id}'")
        self._queue.remove(best)
        self._playing, self._playing_since = best, now
        self._remember(best)
        return [*actions, Start(best, max(timedelta(0), now - best.start))]

    def _expire_queue(self, now: datetime) -> list[Action]:
        expired = [occ for occ in self._queue if now - occ.start >= self._max_delay]
        self._queue = [occ for occ in self._queue if occ not in expired]
        busy = f"'{self._playing.item.id}' was playing" if self._playing else "the speakers were busy"
        reason = f"could not start within {_span(self._max_delay)} of its time: {busy}"
        return [self._record(occ, Outcome.SKIPPED, reason) for occ in expired]

    def _interrupt(self, now: datetime, reason: str) -> list[Action]:
        assert self._playing is not None and self._playing_since is not None
        occ, played = self._playing, now - self._playing_since
        self._stop_playing(now)
        return [
            Interrupt(occ, reason),
            Record(occ, Outcome.INTERRUPTED, f"{reason} after {_span(played)}"),
        ]

    def _stop_playing(self, now: datetime) -> None:
        assert self._playing is not None
        self._hold.release(self._playing.item.resolved_zones(self._all_zones), now)
        self._playing = self._playing_since = None

    def _record(self, occ: Occurrence, outcome: Outcome, reason: str) -> Record:
        self._remember(occ)
        return Record(occ, outcome, reason)

    def _remember(self, occ: Occurrence) -> None:
        self._done[occ.key] = occ.start
        if self._done_oldest is None or occ.start < self._done_oldest:
            self._done_oldest = occ.start
