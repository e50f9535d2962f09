"""The timeline's kept answers equal the uncached expansion, whatever the order of the questions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import ScheduleError
from scheduler.engine import UPCOMING_WITHIN, Engine
from scheduler.items import Item, Level
from scheduler.recurrence import SEARCH_HORIZON, expand, first_start
from scheduler.timeline import Timeline

ZONES = ["Asia/Ho_Chi_Minh", "Europe/Paris", "America/New_York"]  # with and without DST
T0 = datetime(2025, 3, 29, 22, 0, tzinfo=UTC)  # the night Paris moves its clocks forward
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RULES = [
    "FREQ=HOURLY;BYMINUTE=7",
    "FREQ=HOURLY;INTERVAL=5;BYMINUTE=30;BYSECOND=15",
    "FREQ=DAILY;BYHOUR=2;BYMINUTE=30",  # 02:30 does not exist in Paris on 30 March 2025
    "FREQ=DAILY;BYHOUR=6,18;BYMINUTE=0",
    "FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7;BYMINUTE=45",
    "FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=9",
    "FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=2;BYHOUR=7",  # rarer than once in SEARCH_HORIZON's first steps
    "FREQ=DAILY;COUNT=3;BYHOUR=12",
]


@st.composite
def items(draw: st.DrawFn) -> list[Item]:
    """A few items: one-off instants and rules, some with validity windows, some at equal times."""
    found: list[Item] = []
    for index in range(draw(st.integers(0, 6))):
        level = draw(st.sampled_from(list(Level)))
        offset = timedelta(minutes=draw(st.integers(-3 * 24 * 60, 50 * 24 * 60)))
        if draw(st.booleans()):
            far = timedelta(days=draw(st.sampled_from([0, 0, 0, 460, 520])))  # beyond SEARCH_HORIZON
            found.append(Item(f"at{index}", "a.mp3", level, at=T0 + far + offset))
            continue
        window: dict[str, datetime] = {}
        if draw(st.booleans()):
            window["valid_from"] = T0 + offset
        if draw(st.booleans()):
            window["valid_until"] = T0 + offset + timedelta(hours=draw(st.integers(1, 24 * 60)))
        try:
            item = Item(
                f"r{index}",
                "r.mp3",
                level,
                rrule=draw(st.sampled_from(RULES)),
                dtstart=datetime(2025, 1, 1) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 120))),
                **window,
            )
        except ScheduleError:  # a window that ends before it begins
            continue
        found.append(item)
    return found


# Instants to ask about: mostly moving forward, as the agent's frontier does, with jumps forward and
# back (a clock step, a lookback after downtime), and many on the edges where a kept answer stops
# holding: at an occurrence's start, a microsecond either side, and as far before it as the
# question looks ahead.
TICK = timedelta(microseconds=1)
STEPS = st.lists(
    st.one_of(st.integers(0, 90), st.integers(-3 * 3600, 30 * 3600), st.sampled_from([0, 1, 59, 3600])),
    min_size=1,
    max_size=20,
)


def instants(
    draw: st.DrawFn, found: list[Item], tz: ZoneInfo, reach: timedelta = timedelta(0)
) -> list[datetime]:
    moments, now = [], T0
    for step in draw(STEPS):
        now += timedelta(seconds=step)
        moments.append(now)
    starts = sorted(edges_of(found, tz))
    if starts:
        edges = st.tuples(
            st.sampled_from(starts),
            st.sampled_from([timedelta(0), reach]),
            st.sampled_from([-TICK, timedelta(0), TICK]),
        )
        picked = sorted(start - back + nudge for start, back, nudge in draw(st.lists(edges, max_size=12)))
        moments += picked if draw(st.booleans()) else picked[::-1][:3] + picked
    return moments


def edges_of(found: list[Item], tz: ZoneInfo) -> set[datetime]:
    """The starts in the next two months, and the first few after them."""
    starts = {occ.start for occ in expand(found, tz, T0 - timedelta(days=3), T0 + timedelta(days=62))}
    later: datetime | None = T0 + timedelta(days=62)
    for _ in range(3):
        later = first_start(found, tz, later) if later is not None else None
        starts |= {later} if later is not None else set()
    return starts


def timeline(found: list[Item], zone: str, chunk_minutes: int, keep: int) -> Timeline:
    return Timeline(found, ZoneInfo(zone), chunk=timedelta(minutes=chunk_minutes), keep=keep)


CHUNKS = st.sampled_from([7, 60, 12 * 60])
KEEP = st.integers(1, 4)
SPANS = st.lists(st.one_of(st.integers(0, 120), st.integers(0, 3 * 24 * 3600)))  # seconds


@SETTINGS
@given(items(), st.sampled_from(ZONES), CHUNKS, KEEP, SPANS, st.data())
def test_between_equals_expand(
    found: list[Item], zone: str, chunk: int, keep: int, spans: list[int], data: st.DataObject
) -> None:
    line, tz = timeline(found, zone, chunk, keep), ZoneInfo(zone)
    moments = instants(data.draw, found, tz)
    for moment, span in zip(moments, spans + [5] * len(moments), strict=False):
        end = moment + timedelta(seconds=span)
        assert line.between(moment, end) == expand(found, tz, moment, end)


@SETTINGS
@given(items(), st.sampled_from(ZONES), CHUNKS, KEEP, st.data())
def test_first_after_equals_first_start(
    found: list[Item], zone: str, chunk: int, keep: int, data: st.DataObject
) -> None:
    line, tz = timeline(found, zone, chunk, keep), ZoneInfo(zone)
    for moment in instants(data.draw, found, tz, SEARCH_HORIZON):
        assert line.first_after(moment) == first_start(found, tz, moment)


@SETTINGS
@given(items(), st.sampled_from(ZONES), CHUNKS, KEEP, st.integers(0, 4), st.integers(1, 60), st.data())
def test_soonest_equals_the_head_of_expand(
    found: list[Item], zone: str, chunk: int, keep: int, limit: int, days: int, data: st.DataObject
) -> None:
    line, tz, within = timeline(found, zone, chunk, keep), ZoneInfo(zone), timedelta(days=days)
    for moment in instants(data.draw, found, tz, within):
        assert list(line.soonest(moment, limit, within)) == expand(found, tz, moment, moment + within)[:limit]


def test_an_answer_is_kept_until_a_later_instant_can_change_it() -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    found = [
        Item(f"n{h}", "n.mp3", rrule=f"FREQ=DAILY;BYHOUR={h}", dtstart=datetime(2025, 1, 1)) for h in (6, 17)
    ]
    line = Timeline(found, tz)
    six = datetime(2025, 3, 1, 6, tzinfo=tz)
    first = line.soonest(six - timedelta(hours=3), 2, UPCOMING_WITHIN)
    assert [occ.item.id for occ in first] == ["n6", "n17"]
    assert line.soonest(six, 2, UPCOMING_WITHIN) is first  # 06:00 itself is still to come
    after = line.soonest(six + timedelta(microseconds=1), 2, UPCOMING_WITHIN)
    assert [(occ.item.id, occ.start.astimezone(tz).day) for occ in after] == [("n17", 1), ("n6", 2)]


def test_nothing_ahead_stays_nothing_until_a_start_comes_into_reach() -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    far = T0 + SEARCH_HORIZON + timedelta(days=30)
    line = Timeline([Item("far", "f.mp3", at=far)], tz)
    assert line.first_after(T0) is None
    assert line.first_after(T0 + timedelta(days=29)) is None
    assert line.first_after(T0 + timedelta(days=31)) == far


def test_more_comes_into_reach_one_microsecond_after_it_could() -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    late = T0 + timedelta(days=10)
    line, within = Timeline([Item("late", "l.mp3", at=late)], tz), timedelta(days=5)
    assert line.soonest(T0, 3, within) == ()
    assert line.soonest(late - within, 3, within) == ()
    assert [occ.start for occ in line.soonest(late - within + TICK, 3, within)] == [late]
    far = T0 + SEARCH_HORIZON + timedelta(days=30)  # not found by the search from T0 + within on
    line = Timeline([Item("far", "f.mp3", at=far)], tz)
    assert line.soonest(T0, 3, within) == ()
    assert [occ.start for occ in line.soonest(far - within + TICK, 3, within)] == [far]


@settings(max_examples=60, deadline=None)
@given(items(), st.sampled_from(ZONES), st.data())
def test_engine_upcoming_is_what_comes_after_the_frontier(
    found: list[Item], zone: str, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    engine = Engine(found, tz, all_zones=frozenset({"a"}))
    for moment in instants(data.draw, found, tz, UPCOMING_WITHIN):
        engine.tick(moment)
        engine.next_wakeup(moment)
        frontier = moment + TICK  # the last tick (a step back re-opens what lies after it)
        ahead = expand(found, tz, frontier, frontier + UPCOMING_WITHIN)
        assert engine.upcoming(moment, 3) == [occ for occ in ahead if occ.key not in engine.done_keys][:3]


def test_upcoming_follows_a_new_schedule() -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    now = datetime(2025, 3, 1, 5, tzinfo=tz)
    engine = Engine([Item("old", "o.mp3", at=now + timedelta(hours=1))], tz, all_zones=frozenset({"a"}))
    assert [occ.item.id for occ in engine.upcoming(now, 3)] == ["old"]
    engine.replace_items([Item("new", "n.mp3", at=now + timedelta(hours=2))], now)
    assert [occ.item.id for occ in engine.upcoming(now, 3)] == ["new"]
