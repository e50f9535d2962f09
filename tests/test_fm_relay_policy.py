"""FM relay policy: below every scheduled level, only on a carrier, only inside trusted relay hours."""

from __future__ import annotations

from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fm_receiver.relay_policy import should_relay
from foundation.units import covers_whole_day, in_clock_window, parse_clock_window

DAYTIME = [(time(5, 0), time(22, 0))]
WHOLE_DAY = [(time(0, 0), time(0, 0))]


def decide(now: time, **overrides: object) -> tuple[bool, str]:
    inputs: dict[str, object] = {
        "relay_hours": DAYTIME,
        "link_up": True,
        "fallback_on_link_down": True,
        "carrier_present": True,
        "scheduled_busy": False,
        "clock_trusted": True,
    }
    inputs.update(overrides)
    decision = should_relay(now, **inputs)  # type: ignore[arg-type]
    return decision.relay, decision.reason


def test_relays_inside_hours_with_a_carrier() -> None:
    assert decide(time(12, 0)) == (True, "relay_hours")


@pytest.mark.parametrize(
    ("now", "overrides", "expected"),
    [
        (time(12, 0), {"scheduled_busy": True}, (False, "scheduled")),
        (time(12, 0), {"carrier_present": False}, (False, "no_carrier")),
        (time(3, 15), {}, (False, "outside_hours")),
        (time(22, 0), {}, (False, "outside_hours")),  # end is exclusive
        (time(5, 0), {}, (True, "relay_hours")),  # start is inclusive
        (time(12, 0), {"clock_trusted": False}, (False, "clock_untrusted")),
        (time(3, 0), {"clock_trusted": False, "relay_hours": WHOLE_DAY}, (True, "relay_hours")),
        (time(12, 0), {"link_up": False}, (True, "link_down_fallback")),
        (time(12, 0), {"link_up": False, "fallback_on_link_down": False}, (False, "link_down")),
        (time(3, 0), {"link_up": False}, (False, "outside_hours")),  # fallback never wakes the night
    ],
)
def test_rules(now: time, overrides: dict[str, object], expected: tuple[bool, str]) -> None:
    assert decide(now, **overrides) == expected


def test_windows_cross_midnight() -> None:
    night = (time(22, 0), time(2, 0))
    assert in_clock_window(night, time(23, 30))
    assert in_clock_window(night, time(1, 59, 59))
    assert not in_clock_window(night, time(2, 0))
    assert not in_clock_window(night, time(12, 0))


def test_whole_day_coverage() -> None:
    assert covers_whole_day(WHOLE_DAY)
    assert covers_whole_day([(time(6, 0), time(18, 0)), (time(18, 0), time(6, 0))])
    assert not covers_whole_day([(time(6, 0), time(18, 0)), (time(18, 0), time(5, 59))])
    assert not covers_whole_day([])


def test_parse_window() -> None:
    assert parse_clock_window("05:00-22:30") == (time(5, 0), time(22, 30))
    assert parse_clock_window("22:00-24:00") == (time(22, 0), time(0, 0))
    assert parse_clock_window("00:00-24:00") == (time(0, 0), time(0, 0))
    assert parse_clock_window("00:00-00:00") == (time(0, 0), time(0, 0))
    assert covers_whole_day([parse_clock_window("00:00-00:00")])
    assert covers_whole_day([parse_clock_window("05:00-24:00"), parse_clock_window("00:00-05:00")])
    for bad in ("5-22", "25:00-01:00", "07:00-07:00", "05:60-06:00", "24:00-05:00"):
        with pytest.raises(ValueError):
            parse_clock_window(bad)


times = st.times().map(lambda t: t.replace(microsecond=0))
windows = st.lists(st.tuples(times, times), max_size=4)


@given(times, windows, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_invariants(
    now: time,
    hours: list[tuple[time, time]],
    link: bool,
    fallback: bool,
    carrier: bool,
    busy: bool,
    trusted: bool,
) -> None:
    decision = should_relay(
        now,
        relay_hours=hours,
        link_up=link,
        fallback_on_link_down=fallback,
        carrier_present=carrier,
        scheduled_busy=busy,
        clock_trusted=trusted,
    )
    if decision.relay:
        assert carrier and not busy
        assert any(in_clock_window(w, now) for w in hours)
        assert trusted or covers_whole_day(hours)
        assert link or fallback
