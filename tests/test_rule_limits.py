"""Recurrence rules that would defeat the scheduler: too frequent, never starting, too costly.

The ban on MINUTELY and SECONDLY holds for what a rule produces, not its FREQ word; a rule must
start at all; and no rule may make expansion walk years of empty periods on every call.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.items import Item, parse_items
from scheduler.recurrence import item_starts
from scheduler.rule_spacing import MIN_GAP
from scheduler.rules import MAX_COUNT, MAX_INTERVAL, PROBE_YEARS, rule_near, rule_problem

VN = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY = datetime(2025, 3, 3, 6, 0)
EVERY = ",".join(str(n) for n in range(60))


def refusal(rule: str, dtstart: datetime = MONDAY) -> tuple[str, str | None]:
    problem = rule_problem(rule, dtstart, VN)
    assert problem is not None, f"{rule} was accepted"
    return problem


@pytest.mark.parametrize(
    ("rule", "hint"),
    [
        (f"FREQ=HOURLY;BYMINUTE={EVERY};BYSECOND={EVERY}", "06:00:00 and again at 06:00:01, 1s later"),
        ("FREQ=HOURLY;BYSECOND=0,1", "06:00:00 and again at 06:00:01, 1s later"),
        ("FREQ=HOURLY;BYMINUTE=0,58", "06:58:00 and again at 07:00:00, 2min later"),
        ("FREQ=HOURLY;INTERVAL=1;BYMINUTE=10,12", "06:10:00 and again at 06:12:00, 2min later"),
        ("FREQ=DAILY;BYHOUR=6;BYMINUTE=0,1", "06:00:00 and again at 06:01:00, 1min later"),
        ("FREQ=DAILY;BYHOUR=0,23;BYMINUTE=0,58", "23:58:00 and again at 00:00:00 the next day, 2min later"),
        ("FREQ=WEEKLY;BYDAY=MO;BYSECOND=0,30", "06:00:00 and again at 06:00:30, 30s later"),
        ("FREQ=WEEKLY;BYDAY=SU,MO;BYHOUR=0,23;BYMINUTE=0,59", "23:59:00 and again at 00:00:00 the next day"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,2;BYHOUR=0,23;BYMINUTE=0,59", "23:59:00 and again at 00:00:00 the next"),
        ("FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=2;BYHOUR=7;BYMINUTE=0,4", "07:00:00 and again at 07:04:00, 4min"),
    ],
)
def test_rules_whose_starts_come_too_close_are_refused(rule: str, hint: str) -> None:
    expected, given_hint = refusal(rule)
    assert expected == "starts at least 5min apart"
    assert given_hint is not None and given_hint.startswith(f"it can start at {hint}"), given_hint


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=HOURLY",
        "FREQ=HOURLY;BYMINUTE=0,15,30,45",
        "FREQ=HOURLY;BYMINUTE=" + ",".join(str(n) for n in range(0, 60, 5)),  # exactly 5 minutes apart
        "FREQ=HOURLY;BYHOUR=6;BYMINUTE=0,58",  # one hour a day: 06:00 and 06:58, then 06:00 tomorrow
        "FREQ=HOURLY;INTERVAL=2;BYMINUTE=0,58",
        "FREQ=DAILY;INTERVAL=2;BYHOUR=0,23;BYMINUTE=0,58",  # 23:58 and 00:00 are two days apart
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=0,23;BYMINUTE=0,58",
        "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=0,23;BYMINUTE=0,58",
        "FREQ=MONTHLY;BYHOUR=0,23;BYMINUTE=0,58",  # one day a month
        "FREQ=DAILY;BYHOUR=6,11,17;BYMINUTE=0,30",
    ],
)
def test_rules_at_least_the_minimum_apart_are_accepted(rule: str) -> None:
    assert rule_problem(rule, MONDAY, VN) is None


@pytest.mark.parametrize(
    ("rule", "dtstart"),
    [
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", MONDAY),
        ("FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30", MONDAY),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", MONDAY),
        ("FREQ=MONTHLY;BYMONTH=4,6,9,11;BYMONTHDAY=31", MONDAY),
        ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", MONDAY),  # every 7th day from a Monday is never a Tuesday
        ("FREQ=HOURLY;BYSETPOS=3", MONDAY),  # one start per hour has no third
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", datetime(2025, 1, 1)),  # next in 2044
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", datetime(2099, 1, 1)),  # around 2100 too
    ],
)
def test_rules_that_never_start_are_refused(rule: str, dtstart: datetime) -> None:
    expected, hint = refusal(rule, dtstart)
    assert expected == f"a rule that starts within {PROBE_YEARS} years of its dtstart"
    assert hint is not None and "no start from" in hint


def test_a_rule_that_ends_before_it_starts_is_refused() -> None:
    expected, hint = refusal("FREQ=WEEKLY;BYDAY=FR;UNTIL=20250305", MONDAY)
    assert expected == "UNTIL at or after the rule's first start"
    assert hint == "its first start would be 2025-03-07 06:00"


@pytest.mark.parametrize(
    ("rule", "dtstart"),
    [
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", datetime(2097, 3, 1)),  # 2104: 2100 is no leap year
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=6", datetime(2025, 3, 1)),
        ("FREQ=MONTHLY;BYMONTHDAY=31", datetime(2025, 4, 1)),
        ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17", MONDAY),
    ],
)
def test_sparse_rules_that_do_start_are_accepted(rule: str, dtstart: datetime) -> None:
    assert rule_problem(rule, dtstart, VN) is None


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (f"FREQ=DAILY;COUNT={MAX_COUNT + 1}", f"COUNT from 1 to {MAX_COUNT}"),
        ("FREQ=DAILY;COUNT=1000000", f"COUNT from 1 to {MAX_COUNT}"),
        ("FREQ=DAILY;COUNT=0", f"COUNT from 1 to {MAX_COUNT}"),
        ("FREQ=DAILY;INTERVAL=0", f"INTERVAL from 1 to {MAX_INTERVAL}"),
        ("FREQ=DAILY;INTERVAL=-2", f"INTERVAL from 1 to {MAX_INTERVAL}"),
        ("FREQ=DAILY;INTERVAL=" + "9" * 30, f"INTERVAL from 1 to {MAX_INTERVAL}"),
        ("FREQ=DAILY;UNTIL=99991231", "UNTIL from 2000-01-01 to 2199-12-31"),
        ("FREQ=DAILY;UNTIL=19000101", "UNTIL from 2000-01-01 to 2199-12-31"),
        ("FREQ=YEARLY;BYEASTER=0", "the parts of RFC 5545"),
        ("FREQ=DAILY;BYMONTHDAY=" + ",".join(["1"] * 600), "a rule of at most 1000 characters"),
    ],
)
def test_rule_parts_out_of_bounds_are_refused(rule: str, expected: str) -> None:
    assert refusal(rule)[0] == expected


def test_a_1900_rule_with_a_million_count_is_refused_at_the_file() -> None:
    entry = {"id": "r", "audio": "r.mp3", "rrule": "FREQ=DAILY;COUNT=1000000", "dtstart": "1900-01-01"}
    _, findings = parse_items({"items": [entry]}, VN)
    assert {(f.path_text, f.expected) for f in findings} >= {
        ("items[0].dtstart", "a local date-time from 2000-01-01 to 2199-12-31")
    }


def test_count_rules_are_fast_forwarded_like_the_others() -> None:
    dtstart = datetime(2000, 1, 1, 6)
    rule = rule_near(f"FREQ=DAILY;COUNT={MAX_COUNT}", dtstart, datetime(2002, 6, 1))
    assert str(rule).startswith("DTSTART:20020531T060000\n"), str(rule)
    late = rule_near(f"FREQ=DAILY;COUNT={MAX_COUNT}", dtstart, datetime(2030, 1, 1))
    assert list(late) == [], "past its last start a COUNT rule has nothing left to walk"


def test_a_sparse_count_rule_stops_walking_past_the_supported_dates() -> None:
    leap_days = f"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT={MAX_COUNT}"  # 1000 of them: 4000 years
    years = [start.year for start in rule_near(leap_days, datetime(2024, 1, 1), datetime(2150, 1, 1))]
    assert years[:2] == [2024, 2028] and 2100 not in years
    assert years[-2:] == [2196, 2204], "the COUNT rule, as an UNTIL rule ending just past 2199"


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["HOURLY", "DAILY", "WEEKLY"]),
    st.integers(1, 3),
    st.integers(1, MAX_COUNT),
    st.integers(0, 4000),
    st.integers(-3, 3),
)
def test_count_rules_expand_as_dateutil_does(
    freq: str, interval: int, count: int, days: int, hours: int
) -> None:
    text = f"FREQ={freq};INTERVAL={interval};BYMINUTE=7;COUNT={count}"
    dtstart = datetime(2020, 1, 1, 6, 7)
    item = Item("r", "r.mp3", rrule=text, dtstart=dtstart)
    start = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=days, hours=hours)
    end = start + timedelta(days=3)
    reference = rrulestr(text, dtstart=dtstart.replace(tzinfo=VN))
    expected = [t.astimezone(UTC) for t in reference.between(start, end, inc=True) if start <= t < end]
    assert item_starts(item, VN, start, end) == expected


# -- the minimum gap, against dateutil's own expansion ---------------------------------------------

_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
# Mostly values near the edges of the hour and the day, where starts of neighbouring periods meet.
_HOURS = st.sampled_from([0, 1, 11, 12, 22, 23]) | st.integers(0, 23)
_MINUTES = st.sampled_from([0, 2, 4, 6, 30, 54, 56, 58]) | st.integers(0, 59)
_SECONDS = st.sampled_from([0, 30, 59]) | st.integers(0, 59)


@st.composite
def dense_rules(draw: st.DrawFn) -> tuple[str, datetime]:
    freq = draw(st.sampled_from(["HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}", f"INTERVAL={draw(st.sampled_from([1, 1, 1, 2, 3, 5, 8]))}"]
    for name, pool, most in (("BYHOUR", _HOURS, 4), ("BYMINUTE", _MINUTES, 6), ("BYSECOND", _SECONDS, 3)):
        if draw(st.integers(0, 3)) > 0:
            values = draw(st.sets(pool, min_size=1, max_size=most))
            parts.append(f"{name}=" + ",".join(map(str, sorted(values))))
    if draw(st.integers(0, 3)) == 0:
        parts.append("BYDAY=" + ",".join(draw(st.sets(st.sampled_from(_DAYS), min_size=1, max_size=3))))
    minute = timedelta(minutes=draw(st.integers(0, 3 * 365 * 24 * 60)))
    dtstart = datetime(2024, 1, 1) + minute + timedelta(seconds=draw(st.sampled_from([0, 0, 59])))
    return ";".join(parts), dtstart


@st.composite
def straddling_rules(draw: st.DrawFn) -> tuple[str, datetime]:
    """Starts just before and just after midnight or the hour: where one period's last start meets
    the next period's first."""
    freq = draw(st.sampled_from(["HOURLY", "DAILY", "WEEKLY", "MONTHLY"]))
    parts = [f"FREQ={freq}", f"INTERVAL={draw(st.sampled_from([1, 1, 2, 3]))}"]
    hours = draw(st.sampled_from(["0,23", "0,12,23", "6", "6,7", None]))
    if hours is not None:
        parts.append(f"BYHOUR={hours}")
    parts.append(f"BYMINUTE={draw(st.integers(0, 4))},{draw(st.integers(55, 59))}")
    days = draw(st.sampled_from([None, "MO", "SU,MO", "MO,WE", "1,2", "1,15"]))
    if days is not None and freq in ("WEEKLY", "MONTHLY"):
        parts.append(("BYMONTHDAY=" if days[0].isdigit() else "BYDAY=") + days)
    dtstart = datetime(2025, 1, 1) + timedelta(hours=draw(st.integers(0, 2000)))
    return ";".join(parts), dtstart


def _exact(rule: str) -> bool:
    """Rules whose every time of day occurs on consecutive days: the analysis is exact for them."""
    parts = dict(part.split("=") for part in rule.split(";"))
    if "BYDAY" in parts:
        return False
    interval = int(parts["INTERVAL"])
    return (parts["FREQ"] == "DAILY" and interval == 1) or (parts["FREQ"] == "HOURLY" and 24 % interval == 0)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_rules() | straddling_rules())
def test_accepted_rules_never_start_closer_than_the_minimum(case: tuple[str, datetime]) -> None:
    rule, dtstart = case
    problem = rule_problem(rule, dtstart, VN)
    if problem is not None and not problem[0].startswith("starts at least"):
        return  # refused for another reason (dateutil finds BYHOUR unreachable with INTERVAL, ...)
    starts = list(itertools.islice(rrulestr(rule, dtstart=dtstart), 500))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    if problem is None:
        assert all(gap >= MIN_GAP for gap in gaps), (rule, dtstart, min(gaps))
    elif _exact(rule):
        # Refused for closeness: the pair it names does come that close within the first day.
        assert any(gap < MIN_GAP for gap in gaps), (rule, dtstart, problem)
