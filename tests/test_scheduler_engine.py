"""The engine's rules, one by one, with explicit times (device zone Asia/Ho_Chi_Minh, UTC+7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.actions import Action, Interrupt, Outcome, Record, Start
from scheduler.engine import Engine, Queued
from scheduler.items import Item, Level

VN = ZoneInfo("Asia/Ho_Chi_Minh")
ALL = frozenset({"north", "south"})
T6 = datetime(2025, 3, 1, 6, 0, tzinfo=VN)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def at(ident: str, when: datetime, level: Level = Level.NORMAL, zones: set[str] | None = None) -> Item:
    return Item(ident, f"{ident}.mp3", level=level, at=when, zones=frozenset(zones) if zones else None)


def engine(*items: Item, **kwargs: object) -> Engine:
    return Engine(items, VN, all_zones=ALL, **kwargs)  # type: ignore[arg-type]


def summary(actions: list[Action]) -> list[tuple[str, str, str]]:
    """(kind, item id, detail) per action, for compact assertions."""
    out = []
    for action in actions:
        if isinstance(action, Start):
            out.append(("start", action.occurrence.item.id, f"late {action.late_by.total_seconds():g}s"))
        elif isinstance(action, Interrupt):
            out.append(("interrupt", action.occurrence.item.id, action.reason))
        elif isinstance(action, Queued):
            continue  # the row of an occurrence that waits: tested on its own
        else:
            out.append((str(action.outcome), action.occurrence.item.id, action.reason))
    return out


def test_starts_on_time_and_records_completion_from_finished() -> None:
    eng = engine(at("news", T6))
    assert eng.tick(T6 - 10 * S) == []
    assert summary(eng.tick(T6)) == [("start", "news", "late 0s")]
    assert eng.playing is not None and eng.playing.item.id == "news"
    assert summary(eng.finished(eng.playing.key, T6 + M, Outcome.COMPLETED)) == [("completed", "news", "")]
    assert eng.playing is None


def test_late_wakeup_within_catch_up_still_starts() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6 - M)
    assert summary(eng.tick(T6 + 4 * S)) == [("start", "news", "late 4s")]


def test_forward_clock_jump_records_missed_and_never_plays_late() -> None:
    eng = engine(at("news", T6), at("later", T6 + 3 * M))
    eng.tick(T6 - 12 * S)
    actions = eng.tick(T6 + 3 * M)
    assert summary(actions) == [
        ("missed", "news", "clock jumped forward 3min12s (or the agent stalled)"),
        ("start", "later", "late 0s"),
    ]


def test_first_tick_without_watermark_looks_back_only_catch_up() -> None:
    eng = engine(at("old", T6 - M), at("recent", T6 - 3 * S))
    assert summary(eng.tick(T6)) == [("start", "recent", "late 3s")]


def test_restart_logs_downtime_misses_bounded_to_24_hours() -> None:
    daily = Item("daily", "d.mp3", rrule="FREQ=DAILY;BYHOUR=7", dtstart=datetime(2025, 1, 1))
    eng = engine(daily, watermark=T6 - timedelta(days=3))
    actions = eng.tick(T6 + 2 * timedelta(hours=1))  # 08:00: of four 07:00 misses, the last 24 h hold one
    assert [(kind, ident) for kind, ident, _ in summary(actions)] == [("missed", "daily")]
    assert actions[0].reason == "agent was not running from 2025-02-26 06:00:00 to 2025-03-01 08:00:00"
    assert actions[0].occurrence.start == datetime(2025, 3, 1, 7, tzinfo=VN)


def test_backward_clock_jump_replays_nothing_and_keeps_watermark() -> None:
    eng = engine(at("news", T6), at("next", T6 + 2 * M))
    eng.tick(T6)
    eng.finished(f"news@{T6.astimezone(ZoneInfo('UTC')).isoformat()}", T6 + M, Outcome.COMPLETED)
    assert eng.tick(T6 - 5 * M) == []  # the clock went back five minutes
    assert eng.watermark == T6 + M
    assert eng.tick(T6 + 30 * S) == []  # news passes by again: already handled
    assert summary(eng.tick(T6 + 2 * M)) == [("start", "next", "late 0s")]


def test_done_keys_from_a_previous_run_prevent_replay() -> None:
    news = at("news", T6)
    key = f"news@{T6.astimezone(ZoneInfo('UTC')).isoformat()}"
    eng = engine(news, watermark=T6 - S, done_keys=[key, "garbage-without-time"])
    assert eng.tick(T6 + S) == []
    assert eng.done_keys == {key}


def test_done_keys_are_forgotten_after_48_hours() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6)
    assert len(eng.done_keys) == 1
    eng.tick(T6 + timedelta(hours=49))
    assert eng.done_keys == frozenset()


def test_each_done_key_is_forgotten_48_hours_after_its_own_start() -> None:
    later = f"other@{(T6 + timedelta(hours=20)).astimezone(UTC).isoformat()}"
    eng = engine(at("news", T6), done_keys=[later])  # handled by a previous run
    eng.tick(T6)  # news is handled after a later key: it is the oldest now
    eng.tick(T6 + timedelta(hours=48, seconds=1))
    assert eng.done_keys == {later}


def test_higher_level_preempts_at_once_and_is_not_replayed() -> None:
    eng = engine(at("news", T6), at("storm", T6 + 90 * S, Level.EMERGENCY))
    eng.tick(T6)
    actions = eng.tick(T6 + 90 * S)
    assert summary(actions) == [
        ("interrupt", "news", "pre-empted by emergency 'storm'"),
        ("interrupted", "news", "pre-empted by emergency 'storm' after 1min30s"),
        ("start", "storm", "late 0s"),
    ]
    storm = next(a for a in actions if isinstance(a, Start))
    assert summary(eng.finished(storm.occurrence.key, T6 + 2 * M, Outcome.COMPLETED)) == [
        ("completed", "storm", ""),
    ]
    assert eng.playing is None and eng.queue == []


def test_same_level_waits_and_starts_when_the_current_ends() -> None:
    eng = engine(at("a", T6), at("b", T6 + 30 * S))
    eng.tick(T6)
    assert [type(a).__name__ for a in eng.tick(T6 + 30 * S)] == ["Queued"]  # its row says it waits
    assert [o.item.id for o in eng.queue] == ["b"]
    actions = eng.finished(eng.playing.key, T6 + 50 * S, Outcome.COMPLETED)  # type: ignore[union-attr]
    assert summary(actions) == [("completed", "a", ""), ("start", "b", "late 20s")]


def test_lower_level_waits_behind_priority() -> None:
    eng = engine(at("prio", T6, Level.PRIORITY), at("normal", T6 + S))
    eng.tick(T6)
    assert summary(eng.tick(T6 + S)) == [] and [o.item.id for o in eng.queue] == ["normal"]


def test_queued_item_is_skipped_when_it_cannot_start_within_max_delay() -> None:
    eng = engine(at("long", T6), at("short", T6 + M), max_delay=5 * M)
    eng.tick(T6)
    eng.tick(T6 + M)
    assert eng.next_wakeup(T6 + M) == T6 + 6 * M
    assert summary(eng.tick(T6 + 6 * M)) == [
        ("skipped", "short", "could not start within 5min of its time: 'long' was playing"),
    ]
    assert eng.queue == []


def test_simultaneous_items_order_by_level_then_start_then_id() -> None:
    eng = engine(at("b-normal", T6), at("a-normal", T6), at("prio", T6 + S, Level.PRIORITY))
    eng.tick(T6 - M)
    actions = eng.tick(T6 + 2 * S)  # the agent woke late: all three are due together
    assert summary(actions) == [("start", "prio", "late 1s")]
    assert [o.item.id for o in eng.queue] == ["a-normal", "b-normal"]


def test_zones_follow_preroll_playing_and_postroll() -> None:
    eng = engine(at("north-news", T6, zones={"north"}), at("all", T6 + M))
    eng.tick(T6 - 10 * S)
    assert eng.zones_wanted(T6 - 3 * S) == frozenset()
    assert eng.next_wakeup(T6 - 10 * S) == T6 - 2 * S
    assert eng.zones_wanted(T6 - 2 * S) == {"north"}
    eng.tick(T6)
    eng.finished(eng.playing.key, T6 + 20 * S, Outcome.COMPLETED)  # type: ignore[union-attr]
    assert eng.zones_wanted(T6 + 29 * S) == {"north"}
    assert eng.next_wakeup(T6 + 20 * S) == T6 + 30 * S
    assert eng.zones_wanted(T6 + 30 * S) == frozenset()
    assert eng.zones_wanted(T6 + 58 * S) == ALL  # zones None means every zone


def test_back_to_back_items_keep_relays_closed() -> None:
    eng = engine(at("a", T6, zones={"south"}), at("b", T6 + 20 * S, zones={"south"}))
    eng.tick(T6)
    eng.finished(eng.playing.key, T6 + 15 * S, Outcome.COMPLETED)  # type: ignore[union-attr]
    for second in range(15, 21):
        eng.tick(T6 + second * S)
        assert eng.zones_wanted(T6 + second * S) == {"south"}


def test_next_wakeup_reaches_a_start_days_ahead() -> None:
    weekly = Item("weekly", "w.mp3", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=8", dtstart=datetime(2025, 1, 5, 8))
    eng = engine(weekly)
    eng.tick(T6)  # Saturday 1 March
    assert eng.next_wakeup(T6) == datetime(2025, 3, 2, 8, tzinfo=VN) - 2 * S
    assert [o.start for o in eng.upcoming(T6, 2)] == [datetime(2025, 3, d, 8, tzinfo=VN) for d in (2, 9)]


def test_replace_items_keeps_playing_and_drops_removed_queued() -> None:
    a, b = at("a", T6), at("b", T6 + S)
    eng = engine(a, b)
    eng.tick(T6)
    eng.tick(T6 + S)
    c = at("c", T6 + M)
    actions = eng.replace_items([a, c], T6 + 2 * S)
    assert summary(actions) == [("skipped", "b", "removed from the schedule")]
    assert eng.playing is not None and eng.playing.item.id == "a"
    eng.finished(eng.playing.key, T6 + 30 * S, Outcome.COMPLETED)
    assert summary(eng.tick(T6 + M)) == [("start", "c", "late 0s")]


def test_inject_emergency_preempts_and_twice_is_once() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6)
    alert = Item("alert", "alert.mp3", level=Level.EMERGENCY, at=T6, zones=frozenset({"north"}))
    actions = eng.inject(alert, T6 + 10 * S)
    assert [kind for kind, _, _ in summary(actions)] == ["interrupt", "interrupted", "start"]
    assert eng.inject(alert, T6 + 10 * S) == []
    assert eng.zones_wanted(T6 + 11 * S) == ALL  # the cut-off news is still in post-roll


def test_cancel_injected_drops_the_waiting_commands_before_a_stop_and_keeps_the_schedule() -> None:
    eng = engine(at("news", T6), at("weather", T6 + S))
    eng.tick(T6)
    eng.tick(T6 + S)  # weather waits behind news
    plays = [Item(f"cmd-{n}", "cmd.mp3", at=T6) for n in (1, 2)]
    for play in plays:
        eng.inject(play, T6 + 2 * S)  # the same level: they wait too
    assert [occ.item.id for occ in eng.queue] == ["weather", "cmd-1", "cmd-2"]
    cancelled = eng.cancel_injected("cancelled: stop came")
    assert summary(cancelled) == [("skipped", f"cmd-{n}", "cancelled: stop came") for n in (1, 2)]
    assert [occ.item.id for occ in eng.queue] == ["weather"]
    assert [kind for kind, _, _ in summary(eng.stop(T6 + 3 * S, "stopped"))] == ["interrupt", "interrupted"]
    assert summary(eng.tick(T6 + 3 * S)) == [("start", "weather", "late 2s")]
    assert eng.inject(plays[0], T6 + 2 * S) == [], "a cancelled command never plays later"
    assert eng.cancel_injected("again") == []


def test_stale_finished_event_only_ticks() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6)
    assert eng.finished("other@2025-03-01T00:00:00+00:00", T6 + S, Outcome.COMPLETED) == []
    assert eng.playing is not None


def test_failed_playback_is_recorded_with_its_reason() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6)
    actions = eng.finished(eng.playing.key, T6 + S, Outcome.FAILED, "file missing")  # type: ignore[union-attr]
    assert actions == [Record(actions[0].occurrence, Outcome.FAILED, "file missing")]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        engine().tick(datetime(2025, 3, 1, 6))


def test_backward_jump_does_not_stretch_postroll() -> None:
    eng = engine(at("news", T6))
    eng.tick(T6)
    eng.finished(eng.playing.key, T6 + 20 * S, Outcome.COMPLETED)  # type: ignore[union-attr]
    back = T6 - 10 * M
    eng.tick(back)
    assert eng.zones_wanted(back + 9 * S) == ALL
    assert eng.zones_wanted(back + 10 * S) == frozenset()


# -- every due occurrence gets one row, whatever the clock or the agent does ------------------------


def test_an_occurrence_passed_over_by_a_backward_step_still_plays_when_its_time_comes() -> None:
    # The agent started on a clock an hour fast (10:00 for 09:00): 09:30 lay behind the first look.
    eng = engine(at("half-past", T6 + 30 * M), at("nine-fifty", T6 + 50 * M))
    eng.tick(T6 + 60 * M)
    assert eng.queue == [] and eng.playing is None
    eng.tick(T6)  # NTP steps the clock back to 09:00: nothing plays yet
    assert eng.playing is None
    assert eng.next_wakeup(T6) == T6 + 30 * M - timedelta(seconds=2)  # pre-roll of 09:30
    assert summary(eng.tick(T6 + 30 * M)) == [("start", "half-past", "late 0s")]


def test_a_backward_step_never_plays_twice_what_already_played() -> None:
    eng = engine(at("news", T6))
    assert summary(eng.tick(T6)) == [("start", "news", "late 0s")]
    eng.finished(eng.playing.key, T6 + M, Outcome.COMPLETED)  # type: ignore[union-attr]
    eng.tick(T6 - 10 * M)  # stepped back ten minutes
    assert summary(eng.tick(T6)) == [] and eng.playing is None


def test_occurrences_waiting_at_a_restart_are_queued_again_or_recorded_skipped() -> None:
    items = [at("long", T6), at("short", T6 + 30 * S), at("gone-too-late", T6 + 40 * S)]
    key = {item.id: f"{item.id}@{item.at.astimezone(UTC).isoformat()}" for item in items}  # type: ignore[union-attr]
    restarted = Engine(
        items,
        VN,
        all_zones=frozenset({"zone-1"}),
        max_delay=timedelta(minutes=5),
        watermark=T6 + M,
        done_keys=[key["long"]],
        waiting=[key["short"], key["gone-too-late"], "loa-play-1@2025-03-01T00:00:00+00:00"],
    )
    assert summary(restarted.tick(T6 + 2 * M)) == [("start", "short", "late 90s")]
    assert [o.item.id for o in restarted.queue] == ["gone-too-late"]
    assert restarted.orphans() == [
        (
            "loa-play-1@2025-03-01T00:00:00+00:00",
            "the agent stopped while it waited (restart, power cut or crash)",
        )
    ]
    late = Engine(items, VN, all_zones=frozenset({"zone-1"}), max_delay=timedelta(minutes=5),
                  watermark=T6 + M, waiting=[key["short"]])  # fmt: skip
    assert summary(late.tick(T6 + 10 * M))[0] == (
        "skipped",
        "short",
        "the agent stopped while it waited (restart, power cut or crash)",
    )


# -- start lead: the agent starts an occurrence early so that its player sounds on time ----------

MS = timedelta(milliseconds=1)


def test_start_lead_wakes_and_starts_that_much_early() -> None:
    eng = engine(at("news", T6), start_lead=4 * MS)
    eng.tick(T6 - 10 * S)
    assert eng.next_wakeup(T6 - 10 * S) == T6 - 2 * S  # relay pre-roll is unchanged
    eng.tick(T6 - 2 * S)
    assert eng.next_wakeup(T6 - 2 * S) == T6 - 4 * MS
    assert eng.tick(T6 - 5 * MS) == []
    assert summary(eng.tick(T6 - 4 * MS)) == [("start", "news", "late 0s")]
    assert eng.upcoming(T6 - 4 * MS) == []  # started, so no longer "next"
    assert eng.tick(T6) == []  # its scheduled instant passes: it is not started twice


def test_start_lead_counts_lateness_from_the_scheduled_start() -> None:
    eng = engine(at("news", T6), start_lead=4 * MS)
    eng.tick(T6 - M)
    assert summary(eng.tick(T6 + 3 * S)) == [("start", "news", "late 3s")]


def test_start_lead_does_not_save_an_item_past_catch_up() -> None:
    eng = engine(at("news", T6), at("later", T6 + 10 * S), start_lead=50 * MS)
    eng.tick(T6 - M)
    actions = eng.tick(T6 + 10 * S - 50 * MS)
    assert [(kind, ident) for kind, ident, _ in summary(actions)] == [("missed", "news"), ("start", "later")]


def test_start_lead_pre_empts_early_too() -> None:
    eng = engine(at("news", T6), at("storm", T6 + 90 * S, Level.EMERGENCY), start_lead=4 * MS)
    eng.tick(T6)
    eng.tick(T6 + 89 * S)
    assert eng.next_wakeup(T6 + 89 * S) == T6 + 90 * S - 4 * MS
    kinds = [kind for kind, _, _ in summary(eng.tick(T6 + 90 * S - 4 * MS))]
    assert kinds == ["interrupt", "interrupted", "start"]


def test_start_lead_can_change_between_ticks() -> None:
    eng = engine(at("a", T6), at("b", T6 + M))
    eng.tick(T6 - M)
    eng.start_lead = 10 * MS
    assert summary(eng.tick(T6 - 10 * MS)) == [("start", "a", "late 0s")]
    eng.finished(eng.playing.key, T6 + S, Outcome.COMPLETED)  # type: ignore[union-attr]
    eng.start_lead = 2 * MS
    eng.tick(T6 + 59 * S)
    assert eng.next_wakeup(T6 + 59 * S) == T6 + M - 2 * MS
    assert eng.tick(T6 + M - 3 * MS) == []
    assert summary(eng.tick(T6 + M - 2 * MS)) == [("start", "b", "late 0s")]


@pytest.mark.parametrize("lead", [-MS, 2 * S])
def test_start_lead_out_of_range_is_refused(lead: timedelta) -> None:
    with pytest.raises(ValueError, match="start_lead"):
        engine(start_lead=lead)


def test_next_wakeup_asked_after_a_start_passed_unticked_says_wake_now() -> None:
    # The agent ticks, spends a few milliseconds, then asks when to wake: a start that fell in
    # between must not be skipped until the next wake-up (here the next item's pre-roll).
    eng = engine(at("a", T6), at("b", T6 + M))
    eng.tick(T6 - 2 * MS)
    assert eng.next_wakeup(T6 + MS) == T6  # already past: wake at once
    assert summary(eng.tick(T6 + MS)) == [("start", "a", "late 0.001s")]


def test_next_wakeup_asked_after_a_lead_early_start_passed_unticked_says_wake_now() -> None:
    eng = engine(at("a", T6), at("b", T6 + M), start_lead=4 * MS)
    eng.tick(T6 - 5 * MS)
    assert eng.next_wakeup(T6 - 3 * MS) == T6 - 4 * MS


def test_a_new_schedule_on_an_untrusted_clock_starts_nothing() -> None:
    eng = engine(at("old", T6 + M))
    eng.tick(T6 - M)
    actions = eng.replace_items([at("new", T6)], T6, hold="clock not trusted")
    assert summary(actions) == [("missed", "new", "not started: clock not trusted")]
    assert eng.playing is None


def test_resume_hands_a_built_engine_what_the_previous_run_left() -> None:
    eng = engine(at("while-off", T6), at("later", T6 + 10 * M))
    eng.resume(watermark=T6 - M, done_keys=[])
    actions = eng.tick(T6 + 2 * M)
    assert summary(actions)[0][:2] == ("missed", "while-off")
    assert "agent was not running" in summary(actions)[0][2]
    started = engine(at("now", T6))
    started.tick(T6)
    with pytest.raises(RuntimeError, match="not started anything"):
        started.resume(watermark=None)
