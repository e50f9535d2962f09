"""Daily and weekly rules at fixed times, expanded without dateutil, give what dateutil gives.

scheduler.plain_rule takes only the rules whose meaning it knows; these tests draw such rules and
near misses (other spellings, other parts, values out of range), and check its starts and its
verdict against dateutil's own expansion and the general check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.plain_rule import MAX_WEEKLY_INTERVAL, plain_rule
from scheduler.rule_spacing import too_close
from scheduler.rules import _bounds_problem, _start_problem, base_rule, local_starts, rule_parts, rule_problem

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DTSTART = datetime(2025, 3, 3, 6, 0)
_DTSTARTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2199, 1, 1)).map(
    lambda moment: moment.replace(microsecond=0)
)


@st.composite
def plain_rules(draw: st.DrawFn, max_interval: int = 30) -> str:
    """``FREQ=DAILY`` or ``WEEKLY`` with some of INTERVAL, BYDAY (weekly), BYHOUR, BYMINUTE,
    BYSECOND, in any order and case."""
    weekly = draw(st.booleans())
    parts = []
    intervals = min(max_interval, MAX_WEEKLY_INTERVAL) if weekly else max_interval
    for name, top in (("INTERVAL", intervals), ("BYHOUR", 23), ("BYMINUTE", 59), ("BYSECOND", 59)):
        if draw(st.booleans()):
            low = 1 if name == "INTERVAL" else 0
            values = draw(st.lists(st.integers(low, top), min_size=1, max_size=1 if low else 4))
            parts.append(f"{name}={','.join(str(value) for value in values)}")
    if weekly and draw(st.booleans()):
        days = draw(
            st.lists(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), min_size=1, max_size=4)
        )
        parts.append(f"BYDAY={','.join(days)}")
    order = draw(st.permutations(parts))
    rule = ";".join(["FREQ=WEEKLY" if weekly else "FREQ=DAILY", *order])
    return rule.lower() if draw(st.booleans()) else rule


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;COUNT=3",
        "FREQ=DAILY;UNTIL=20300101T000000",
        "FREQ=DAILY;BYDAY=MO,TU",
        "FREQ=DAILY;BYHOUR=24",
        "FREQ=DAILY;BYMINUTE=60",
        "FREQ=DAILY;BYSECOND=60",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=1,2",
        "FREQ=DAILY;BYHOUR=6;BYHOUR=7",
        "FREQ=DAILY; BYHOUR=6",
        "FREQ=DAILY;",
        "BYHOUR=6;FREQ=DAILY",
        "FREQ=WEEKLY;BYDAY=1MO",
        "FREQ=WEEKLY;BYDAY=MO;WKST=SU",
        "FREQ=WEEKLY;BYDAY=XX",
        f"FREQ=WEEKLY;INTERVAL={MAX_WEEKLY_INTERVAL + 1}",
        "FREQ=MONTHLY;BYHOUR=6",
        "FREQ=DAILY;BYHOUR=-1",
        "FREQ=DAILY;BYHOUR=",
    ],
)
def test_other_rules_are_left_to_dateutil(rule: str) -> None:
    assert plain_rule(rule, DTSTART) is None


def test_a_dtstart_with_microseconds_or_an_offset_is_left_to_dateutil() -> None:
    assert plain_rule("FREQ=DAILY", DTSTART.replace(microsecond=5)) is None
    assert plain_rule("FREQ=DAILY", DTSTART.replace(tzinfo=UTC)) is None


@settings(max_examples=300, deadline=None)
@given(plain_rules(), _DTSTARTS, st.integers(-3000, 3000), st.integers(0, 40 * 24))
def test_plain_starts_are_dateutils(rule: str, dtstart: datetime, offset_h: int, span_h: int) -> None:
    parsed = plain_rule(rule, dtstart)
    assert parsed is not None, rule
    lo = dtstart + timedelta(hours=offset_h, minutes=offset_h % 61)
    hi = lo + timedelta(hours=span_h)
    expected = list(rrulestr(rule, dtstart=dtstart).between(lo, hi, inc=True))
    assert parsed.between(lo, hi) == expected
    assert local_starts(rule, dtstart, lo, hi) == expected


@settings(max_examples=300, deadline=None)
@given(plain_rules(max_interval=2000), _DTSTARTS)
def test_the_fast_verdict_is_the_general_checks(rule: str, dtstart: datetime) -> None:
    """Dateutil's parse, the bounds, the spacing and the first start give the same verdict."""
    parts = rule_parts(rule)
    assert plain_rule(rule, dtstart) is not None
    general = base_rule(rule, dtstart)
    expected = (
        _bounds_problem(general, parts)
        or too_close(parts, dtstart)
        or _start_problem(general, parts, dtstart)
    )
    assert rule_problem(rule, dtstart, VN) == expected
