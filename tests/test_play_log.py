"""Closing a play-log row that a power cut left 'playing': a real store, the agent's own PlayLog."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from agent.config import load_config
from agent.play_log import PlayLog
from agent.schedule_source import Schedule
from agent.store import PlayRecord, Store
from tests.agent_harness import write_config, write_schedule

START = "2026-11-26T06:30:00.000+00:00"  # 13:30:00 in the device's zone (Asia/Ho_Chi_Minh, +07:00)


def left_playing(tmp_path: Path, actual_start: str | None) -> tuple[Store, PlayLog]:
    write_schedule(tmp_path)
    config = load_config(write_config(tmp_path))
    store = Store.open(config.storage.dir)
    store.record_play(
        PlayRecord("news@1", "news", "a.wav", "normal", ("zone-1",), START, actual_start, None, "playing", "")
    )
    return store, PlayLog(store, Schedule(config), frozenset(config.all_zones))


def closed(store: Store) -> PlayRecord:
    (row,) = store.play_log()
    store.close()
    assert row.outcome == "interrupted"
    return row


def test_the_row_ends_when_the_agent_was_last_known_alive(tmp_path: Path) -> None:
    store, play_log = left_playing(tmp_path, actual_start="2026-11-26T06:30:00.250+00:00")
    store.put_state("alive_at", "2026-11-26T06:30:07.400+00:00")
    play_log.close_unfinished()
    row = closed(store)
    assert row.ended == "2026-11-26T06:30:07.400+00:00"
    assert row.reason == "agent stopped while playing; last known alive at 13:30:07"


def test_a_row_started_after_the_last_alive_mark_ends_at_its_start(tmp_path: Path) -> None:
    store, play_log = left_playing(tmp_path, actual_start="2026-11-26T06:30:00.250+00:00")
    store.put_state("alive_at", "2026-11-26T06:29:55.000+00:00")  # marks are at most 10 s apart
    play_log.close_unfinished()
    row = closed(store)
    assert row.ended == "2026-11-26T06:30:00.250+00:00"  # it was alive when the audio started
    assert row.reason == "agent stopped while playing; last known alive at 13:30:00"


def test_a_row_never_started_ends_at_its_scheduled_start(tmp_path: Path) -> None:
    store, play_log = left_playing(tmp_path, actual_start=None)
    play_log.close_unfinished()  # no alive mark at all: a store from before they were kept
    row = closed(store)
    assert row.ended == START and row.actual_start is None
    assert row.reason == "agent stopped while playing; last known alive time unknown"


def test_times_compare_as_instants_not_as_text(tmp_path: Path) -> None:
    store, play_log = left_playing(tmp_path, actual_start="2026-11-26T06:30:00.250+00:00")
    store.put_state("alive_at", "2026-11-26T13:30:05.000+07:00")  # later, though it sorts first
    play_log.close_unfinished()
    row = closed(store)
    assert datetime.fromisoformat(row.ended or "") == datetime.fromisoformat("2026-11-26T06:30:05+00:00")
