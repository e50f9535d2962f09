"""Alarm hysteresis as properties over any run of observations."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alarms import RULES, Alarms, Change, Rule, rule_of

RULE = Rule(raise_after=5.0, clear_after=30.0, words="test")
observations = st.lists(
    st.tuples(st.floats(0.0, 40.0, allow_nan=False), st.booleans()), min_size=1, max_size=80
)


def run(steps: list[tuple[float, bool]]) -> list[tuple[int, float, Change]]:
    """Each change with the index and instant of the observation that made it."""
    alarms = Alarms({"x.test": RULE})
    now, changes = 0.0, []
    for index, (gap, active) in enumerate(steps):
        now += gap
        change = alarms.observe("x.test", active, "detail", now)
        if change is not None:
            changes.append((index, now, change))
    return changes


def held(steps: list[tuple[float, bool]], upto: int) -> float:
    """How long the condition observed at step ``upto`` had held without a break by then."""
    instants = list(itertools.accumulate(gap for gap, _ in steps))
    first = upto
    while first > 0 and steps[first - 1][1] == steps[upto][1]:
        first -= 1
    return instants[upto] - instants[first]


@given(observations)
def test_an_alarm_changes_only_after_its_condition_held_long_enough(steps: list[tuple[float, bool]]) -> None:
    changes = run(steps)
    for index, _, change in changes:
        assert steps[index][1] is change.raised
        assert held(steps, index) >= (RULE.raise_after if change.raised else RULE.clear_after)
    assert [change.raised for _, _, change in changes] == [n % 2 == 0 for n in range(len(changes))]


@given(observations)
def test_no_two_changes_closer_than_the_rules_allow(steps: list[tuple[float, bool]]) -> None:
    for (_, earlier, _), (_, later, second) in itertools.pairwise(run(steps)):
        assert later - earlier >= (RULE.raise_after if second.raised else RULE.clear_after)


@given(st.booleans(), st.floats(0.5, 10.0))
def test_a_steady_condition_is_reached(active: bool, step: float) -> None:
    alarms = Alarms({"x.test": RULE})
    for index in range(int(40 / step) + 2):
        alarms.observe("x.test", active, "detail", index * step)
    assert alarms.raised("x.test") is active


def test_a_zone_alarm_takes_its_familys_rule_and_unknown_codes_are_refused() -> None:
    assert rule_of("amp.fault.zone-7") is RULES["amp.fault"]
    with pytest.raises(KeyError):
        rule_of("no.such.alarm")
    alarms = Alarms()
    assert alarms.observe("amp.fault.zone-1", True, "pin 23", 0.0) is None
    assert alarms.observe("amp.fault.zone-1", True, "pin 23", 2.0) == Change(
        "amp.fault.zone-1", True, "pin 23"
    )
    assert alarms.active() == {"amp.fault.zone-1": "pin 23"}
