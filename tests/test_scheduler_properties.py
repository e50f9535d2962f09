"""Property tests: recurrence against dateutil, and the engine over random runs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from foundation.errors import ScheduleError
from scheduler.actions import Action, Interrupt, Outcome, Record, Start
from scheduler.engine import Engine, Queued
from scheduler.items import Item, Level
from scheduler.recurrence import Occurrence, expand

ZONES = ["Asia/Ho_Chi_Minh", "Europe/Paris", "America/New_York"]
VN = ZoneInfo("Asia/Ho_Chi_Minh")
ALL = frozenset({"a", "b", "c"})
T0 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
CATCH_UP, MAX_DELAY = timedelta(seconds=5), timedelta(minutes=4)
PREROLL, POSTROLL = timedelta(seconds=2), timedelta(seconds=10)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- recurrence --------------------------------------------------------------------------------

FREQS = {"HOURLY": 20, "DAILY": 400, "WEEKLY": 400, "MONTHLY": 800}  # how far back dtstart may lie


@st.composite
def rules(draw: st.DrawFn) -> tuple[str, datetime, datetime, datetime]:
    freq = draw(st.sampled_from(sorted(FREQS)))
    parts = [f"FREQ={freq}", f"INTERVAL={draw(st.integers(1, 3))}"]
    if draw(st.booleans()):
        hours = draw(st.sets(st.integers(0, 23), min_size=1, max_size=3))
        parts.append("BYHOUR=" + ",".join(map(str, sorted(hours))))
    if draw(st.booleans()):
        days = draw(
            st.sets(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), min_size=1, max_size=3)
        )
        parts.append("BYDAY=" + ",".join(sorted(days)))
    parts.append(f"BYMINUTE={draw(st.integers(0, 59))}")
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 3 * 365 * 24 * 60)))
    back = timedelta(days=draw(st.integers(0, FREQS[freq])), minutes=draw(st.integers(0, 1439)))
    dtstart = (start - back).replace(tzinfo=None, second=0)
    end = start + timedelta(hours=draw(st.integers(1, 72)))
    return ";".join(parts), dtstart, start, end


@SETTINGS
@given(rules(), st.sampled_from(ZONES), st.integers(-48, 48), st.integers(0, 96))
def test_expansion_matches_dateutil_in_the_device_zone(
    case: tuple[str, datetime, datetime, datetime], zone: str, from_h: int, length_h: int
) -> None:
    text, dtstart, start, end = case
    tz = ZoneInfo(zone)
    valid_from = start + timedelta(hours=from_h)
    valid_until = valid_from + timedelta(hours=length_h) if length_h else None
    try:
        item = Item("r", "r.mp3", rrule=text, dtstart=dtstart, valid_from=valid_from, valid_until=valid_until)
    except ScheduleError:
        assume(False)  # dateutil refuses rules that can never match (e.g. INTERVAL=2 vs odd BYHOUR)
        return
    reference = rrulestr(text, dtstart=dtstart.replace(tzinfo=tz))  # dateutil iterates wall time in tz
    expected = {
        moment.astimezone(UTC)
        for moment in reference.between(start - timedelta(days=1), end + timedelta(days=1), inc=True)
    }
    lo, hi = max(start, valid_from), min(end, valid_until) if valid_until else end
    assert [o.start for o in expand([item], tz, start, end)] == sorted(t for t in expected if lo <= t < hi)


# -- engine runs -------------------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn, spread_s: int = 3600) -> list[Item]:
    count = draw(st.integers(1, 7))
    items = []
    for index in range(count):
        level = draw(st.sampled_from(list(Level)))
        zones = draw(st.none() | st.frozensets(st.sampled_from(sorted(ALL)), min_size=1))
        if draw(st.integers(0, 3)) == 0:
            minute, second = draw(st.integers(0, 59)), draw(st.integers(0, 59))
            rule = f"FREQ=HOURLY;BYMINUTE={minute};BYSECOND={second}"
            items.append(
                Item(
                    f"r{index}",
                    "r.mp3",
                    level,
                    zones,
                    rrule=rule,
                    dtstart=datetime(2025, 3, 1),
                    valid_until=T0 + timedelta(seconds=spread_s),
                )
            )
        else:
            when = T0 + timedelta(seconds=draw(st.integers(-30, spread_s)))
            items.append(Item(f"i{index}", "i.mp3", level, zones, at=when))
    return items


STEPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(100, 90_000)),  # milliseconds forward
    st.tuples(st.just("jump"), st.integers(-600_000, 1_800_000)),  # clock steps back or forward
    st.tuples(st.just("finish"), st.sampled_from([Outcome.COMPLETED, Outcome.FAILED, Outcome.INTERRUPTED])),
    st.tuples(st.just("inject"), st.sampled_from(list(Level))),
)


@dataclass
class Run:
    """Drives an engine and checks per-call invariants; keeps what it saw for end-of-run checks."""

    engine: Engine
    now: datetime = T0
    started: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    ever_queued: set[str] = field(default_factory=set)
    injected: set[str] = field(default_factory=set)
    earliest: datetime = T0  # the earliest clock reading: a step back re-opens time behind it

    def apply(self, actions: list[Action]) -> None:
        for index, action in enumerate(actions):
            key = action.occurrence.key
            if isinstance(action, Start):
                self.check_start(action, actions[:index])
                self.started.append(key)
            elif isinstance(action, Record):
                self.records.append(key)
            elif isinstance(action, Queued):
                assert key not in self.started and key not in self.records  # queued before any outcome
            else:
                assert isinstance(actions[index + 1], Record) and actions[index + 1].occurrence.key == key
        self.check_state()

    def check_start(self, action: Start, before: list[Action]) -> None:
        key = action.occurrence.key
        assert timedelta(0) <= action.late_by < MAX_DELAY
        if action.late_by > CATCH_UP:  # it was due in time and had to wait behind another item
            assert key in self.ever_queued
        playing = self.engine.playing
        if playing is not None and playing.key != key:
            assert any(isinstance(a, Interrupt) and a.occurrence.key == playing.key for a in before)

    def check_state(self) -> None:
        playing, queue = self.engine.playing, self.engine.queue
        self.ever_queued |= {occ.key for occ in queue}
        if playing is None:
            assert queue == []
        else:  # nothing waiting outranks what plays: an emergency always pre-empts at once
            assert all(occ.item.level <= playing.item.level for occ in queue)

    def step(self, kind: str, value: object) -> None:
        if kind in ("tick", "jump"):
            self.now += timedelta(milliseconds=int(value))  # type: ignore[call-overload]
            self.earliest = min(self.earliest, self.now)
            self.apply(self.engine.tick(self.now))
        elif kind == "finish" and self.engine.playing is not None:
            self.apply(self.engine.finished(self.engine.playing.key, self.now, Outcome(str(value))))
        elif kind == "inject":
            item = Item(f"cmd{len(self.injected)}", "c.mp3", Level(int(value)), at=self.now)  # type: ignore[call-overload]
            self.injected.add(Occurrence(item, self.now).key)
            self.apply(self.engine.inject(item, self.now))

    def drain(self, until: datetime) -> None:
        for _ in range(10_000):
            if self.engine.playing is not None:
                self.apply(self.engine.finished(self.engine.playing.key, self.now, Outcome.COMPLETED))
            elif self.now > until and not self.engine.queue:
                return
            else:
                self.now = max(self.now, (self.engine.next_wakeup(self.now) or until + MAX_DELAY))
                self.apply(self.engine.tick(self.now))
        raise AssertionError("run did not settle")


def new_engine(items: list[Item], lead: timedelta = timedelta(0)) -> Engine:
    return Engine(
        items,
        VN,
        all_zones=ALL,
        catch_up=CATCH_UP,
        max_delay=MAX_DELAY,
        preroll=PREROLL,
        postroll=POSTROLL,
        start_lead=lead,
    )


def drain_and_check_one_outcome_each(run: Run, items: list[Item], lead: timedelta = timedelta(0)) -> None:
    """Settle the run, then: each occurrence started at most once, and every one that fell due
    (started ``lead`` early at most) got exactly one outcome."""
    end = T0 + timedelta(hours=2)
    run.drain(end)
    assert len(run.started) == len(set(run.started))
    assert len(run.records) == len(set(run.records))
    assert set(run.started) <= set(run.records)
    watermark = run.engine.watermark
    assert watermark is not None and watermark >= end
    # Everything from the first look back (catch-up) falls due once, and, after a step back, what
    # lies between the earliest clock reading and that look back too, as the clock passes it again.
    first = min(T0 - CATCH_UP, run.earliest + timedelta(microseconds=1))
    due = watermark + lead + timedelta(microseconds=1)
    assert set(run.records) == {o.key for o in expand(items, VN, first, due)} | run.injected


@SETTINGS
@given(schedules(), st.lists(STEPS, max_size=40))
def test_every_occurrence_starts_at_most_once_and_gets_one_outcome(items: list[Item], steps: list) -> None:
    run = Run(new_engine(items))
    run.apply(run.engine.tick(T0))
    for kind, value in steps:
        run.step(kind, value)
    drain_and_check_one_outcome_each(run, items)


LEADS = st.integers(0, 100).map(lambda ms: timedelta(milliseconds=ms))


@SETTINGS
@given(schedules(), st.lists(STEPS, max_size=40), LEADS)
def test_with_a_start_lead_every_occurrence_still_gets_one_outcome_and_never_starts_too_early(
    items: list[Item], steps: list, lead: timedelta
) -> None:
    run = Run(new_engine(items, lead))
    run.apply(run.engine.tick(T0))
    for kind, value in steps:
        starts_before = len(run.started)
        waiting = {occ.key for occ in run.engine.queue}  # due already, by an earlier clock reading
        run.step(kind, value)
        for key in run.started[starts_before:]:  # nothing starts more than ``lead`` before its time
            assert key in run.injected or key in waiting or _start_of(key) - lead <= run.now
    drain_and_check_one_outcome_each(run, items, lead)


@SETTINGS
@given(schedules(spread_s=600), LEADS)
def test_waking_at_next_wakeup_starts_each_free_occurrence_exactly_lead_early(
    items: list[Item], lead: timedelta
) -> None:
    engine, now = new_engine(items, lead), T0
    started: dict[str, datetime] = {}
    for _ in range(2_000):
        for action in engine.tick(now):
            if isinstance(action, Start):
                started[action.occurrence.key] = now
        while engine.playing is not None:  # every item is over at once: the speakers are free
            for action in engine.finished(engine.playing.key, now, Outcome.COMPLETED):
                if isinstance(action, Start):
                    started[action.occurrence.key] = now
        wake = engine.next_wakeup(now)
        if wake is None:
            break
        now = wake
    expected = {
        o.key: max(T0, o.start - lead) for o in expand(items, VN, T0 - CATCH_UP, T0 + timedelta(hours=1))
    }
    assert started == expected


@SETTINGS
@given(schedules(spread_s=600), LEADS, st.lists(st.integers(0, 2500), min_size=1, max_size=10))
def test_a_loop_that_asks_late_when_to_wake_still_starts_on_time(
    items: list[Item], lead: timedelta, overheads_ms: list[int]
) -> None:
    """The agent ticks, carries out the actions (ms, or seconds on a stalled box), then asks when to wake."""
    engine, now = new_engine(items, lead), T0
    started: dict[str, datetime] = {}
    for step in range(2_000):
        for action in engine.tick(now):
            if isinstance(action, Start):
                started[action.occurrence.key] = now
        while engine.playing is not None:
            for action in engine.finished(engine.playing.key, now, Outcome.COMPLETED):
                if isinstance(action, Start):
                    started[action.occurrence.key] = now
        asked = now + timedelta(milliseconds=overheads_ms[step % len(overheads_ms)])
        wake = engine.next_wakeup(asked)
        if wake is None:
            break
        now = max(wake, asked)
    late = timedelta(milliseconds=max(overheads_ms))
    due = {o.key: max(T0, o.start - lead) for o in expand(items, VN, T0 - CATCH_UP, T0 + timedelta(hours=1))}
    assert started.keys() == due.keys()
    assert all(due[key] <= at <= due[key] + late for key, at in started.items())


def _start_of(key: str) -> datetime:
    return datetime.fromisoformat(key.rpartition("@")[2])


# -- relays ------------------------------------------------------------------------------------


@dataclass
class Played:
    occurrence: Occurrence
    started: datetime
    ended: datetime | None = None


@dataclass
class Relays:
    applied: list[tuple[datetime, frozenset[str]]]  # what the agent powered, from each wake-up on
    played: list[Played]
    skipped: list[tuple[datetime, Occurrence]]

    def state_at(self, moment: datetime) -> frozenset[str]:
        return [zones for when, zones in self.applied if when <= moment][-1]

    def switched_off_for_a_reason(self, zone: str, moment: datetime) -> bool:
        """Relays open only when the zone's post-roll expires or its waiting item was skipped."""
        ends = [p.ended + POSTROLL for p in self.played if p.ended and zone in zones_of(p.occurrence)]
        skips = [when for when, occ in self.skipped if zone in zones_of(occ)]
        return moment in ends or moment in skips

    def switched_on_for_a_reason(self, zone: str, moment: datetime, items: list[Item]) -> bool:
        """Relays close only within pre-roll of a start in that zone."""
        soon = expand(items, VN, moment, moment + PREROLL + timedelta(microseconds=1))
        return any(zone in zones_of(occ) for occ in soon)


def zones_of(occ: Occurrence) -> frozenset[str]:
    return occ.item.resolved_zones(ALL)


def simulate_relays(items: list[Item], durations: list[int]) -> Relays:
    """Run like the agent: wake at next_wakeup or when the audio ends, then apply zones_wanted."""
    engine, now = new_engine(items), T0
    relays = Relays([], [], [])
    played: dict[str, Played] = {}

    def carry_out(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Record) and action.outcome is Outcome.SKIPPED:
                relays.skipped.append((now, action.occurrence))
            elif isinstance(action, Start):
                played[action.occurrence.key] = Played(action.occurrence, now)
            elif isinstance(action, Interrupt):
                played[action.occurrence.key].ended = now

    for _ in range(2_000):
        carry_out(engine.tick(now))
        relays.applied.append((now, engine.zones_wanted(now)))
        current = played[engine.playing.key] if engine.playing else None
        length = timedelta(seconds=durations[len(played) % len(durations)])
        audio_end = current.started + length if current else None
        wake = [t for t in (engine.next_wakeup(now), audio_end) if t is not None]
        if not wake:
            relays.played = list(played.values())
            return relays
        now = min(wake)
        if current is not None and audio_end == now:
            current.ended = now
            carry_out(engine.finished(current.occurrence.key, now, Outcome.COMPLETED))
    raise AssertionError("relay run did not settle")


@settings(max_examples=100, deadline=None)
@given(schedules(spread_s=600), st.lists(st.integers(1, 90), min_size=1, max_size=5))
def test_relays_cover_preroll_to_postroll_and_never_chatter(items: list[Item], durations: list[int]) -> None:
    relays = simulate_relays(items, durations)
    for play in relays.played:
        assert play.ended is not None
        first, last = max(T0, play.occurrence.start - PREROLL), play.ended + POSTROLL
        for zone in zones_of(play.occurrence):
            assert zone in relays.state_at(first)
            assert all(zone in zones for when, zones in relays.applied if first <= when < last)
    for zone in ALL:
        changes = [(when, zone in zones) for when, zones in relays.applied]
        for (_, was_on), (when, is_on) in itertools.pairwise(changes):
            if was_on and not is_on:
                assert relays.switched_off_for_a_reason(zone, when)
            if is_on and not was_on:
                assert relays.switched_on_for_a_reason(zone, when, items)
