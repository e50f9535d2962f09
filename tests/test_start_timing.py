"""The start lead learnt from playbacks, and when the next occurrence is handed to the player."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.start_timing import DEFAULT_LEAD, MAX_LEAD, StartTimer
from scheduler.items import Item
from scheduler.recurrence import Occurrence

T = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)


def observed(timer: StartTimer, *latencies_ms: float) -> StartTimer:
    for n, latency in enumerate(latencies_ms):
        asked = T + n * S
        timer.observe(asked, asked + latency * MS)
    return timer


def occurrence(ident: str, start: datetime) -> Occurrence:
    return Occurrence(Item(ident, f"{ident}.mp3", at=start), start)


def test_lead_starts_from_the_measured_or_default_value() -> None:
    assert StartTimer().lead() == DEFAULT_LEAD
    assert StartTimer(3 * MS).lead() == 3 * MS
    assert StartTimer(2 * S).lead() == MAX_LEAD


def test_lead_is_the_median_of_recent_latencies() -> None:
    timer = observed(StartTimer(20 * MS), 3, 4, 3, 5, 3)
    assert timer.lead() == 3 * MS
    assert timer.wake_at(T) == T - 3 * MS


def test_an_odd_slow_start_does_not_move_the_lead() -> None:
    timer = observed(StartTimer(), 3, 3, 3, 900, 3, 4)
    assert timer.lead() == 3 * MS


def test_old_latencies_are_forgotten() -> None:
    timer = observed(StartTimer(window=3), 3, 3, 3, 8, 8, 8)
    assert timer.lead() == 8 * MS


def test_a_slow_player_is_capped_at_max_lead() -> None:
    assert observed(StartTimer(), 400, 500, 600).lead() == MAX_LEAD


def test_impossible_latencies_are_ignored() -> None:
    timer = StartTimer(4 * MS)
    timer.observe(T, T - MS)  # the clock stepped back between asking and playing
    timer.observe(T, T + timedelta(minutes=5))  # a hung backend, not a start latency
    assert timer.lead() == 4 * MS


@given(st.lists(st.floats(-1e4, 1e5, allow_nan=False), max_size=40))
def test_lead_is_always_within_bounds(latencies_ms: list[float]) -> None:
    assert timedelta(0) <= observed(StartTimer(), *latencies_ms).lead() <= MAX_LEAD


def test_next_occurrence_is_prepared_once_shortly_before_it() -> None:
    timer = StartTimer()
    news, later = occurrence("news", T), occurrence("later", T + 10 * S)
    assert timer.to_prepare([news, later], T - 3 * S) is None  # too early
    assert timer.to_prepare([news, later], T - 2 * S) == news
    assert timer.to_prepare([news, later], T - S) is None  # already handed over
    assert timer.to_prepare([later], T) is None
    assert timer.to_prepare([later], T + 9 * S) == later
    assert timer.to_prepare([], T + 20 * S) is None
