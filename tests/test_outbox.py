"""The store's outbox as the central link will read it: sequence numbers, the delivered cursor,
redelivery of a changed play-log row, and retention.  Real SQLite files, reopened as after a
restart; a hypothesis state machine plays the link against the agent's writes."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from agent.clock_trust import ClockTrust
from agent.events import EventKind, Severity
from agent.store import PlayRecord, Retention, Store, iso
from tests.agent_harness import running_agent, write_config, write_schedule

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)


def play(key: str, outcome: str = "completed", start: datetime = NOW) -> PlayRecord:
    return PlayRecord(
        key=key,
        item_id=key.partition("@")[0],
        audio="a.wav",
        level="normal",
        zones=("zone-1",),
        scheduled_start=iso(start) or "",
        actual_start=iso(start),
        ended=None,
        outcome=outcome,
        reason="",
    )


def drain(store: Store, stream: str, batch: int = 2) -> list[tuple[int, str]]:
    """What the link sends: batches from the cursor, each marked delivered once sent."""
    sent: list[tuple[int, str]] = []
    while True:
        if stream == "events":
            rows = [(row["seq"], row["detail"]) for row in store.undelivered_events(batch)]
        else:
            rows = [(seq, f"{r.key} {r.outcome}") for seq, r in store.undelivered_plays(batch)]
        if not rows:
            return sent
        sent += rows
        store.mark_delivered(stream, rows[-1][0])


# -- sequence numbers and the cursor -----------------------------------------------------------------


def test_sequence_numbers_strictly_increase(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    seqs = [store.add_event(EventKind.COMMAND, f"c{i}") for i in range(5)]
    for i in range(5):
        store.record_play(play(f"n{i}@x"))
    store.close()
    store = Store.open(tmp_path)  # a restart continues the numbering
    seqs.append(store.add_event(EventKind.COMMAND, "after restart"))
    assert seqs == sorted(set(seqs))
    plays = [seq for seq, _ in store.undelivered_plays(100)]
    assert plays == [1, 2, 3, 4, 5]
    store.record_play(play("n5@x"))
    assert [seq for seq, _ in store.undelivered_plays(100)][-1] == 6
    store.close()


def test_the_cursor_delivers_each_record_once_in_order_across_a_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for i in range(5):
        store.add_event(EventKind.COMMAND, f"e{i}")
        store.record_play(play(f"n{i}@x"))
    first_events = [row["detail"] for row in store.undelivered_events(3)]
    store.mark_delivered("events", store.undelivered_events(3)[-1]["seq"])
    first_plays = [r.key for _, r in store.undelivered_plays(2)]
    store.mark_delivered("play_log", store.undelivered_plays(2)[-1][0])
    store.close()
    store = Store.open(tmp_path)
    store.add_event(EventKind.COMMAND, "e5")
    rest_events = [detail for _, detail in drain(store, "events")]
    rest_plays = [text.split()[0] for _, text in drain(store, "play_log")]
    assert first_events + rest_events == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert first_plays + rest_plays == [f"n{i}@x" for i in range(5)]
    assert drain(store, "events") == [] and drain(store, "play_log") == []
    store.mark_delivered("events", 1)  # a late, older acknowledgement does not move the cursor back
    assert store.undelivered_events() == []
    with pytest.raises(ValueError, match="unknown outbox stream"):
        store.mark_delivered("plays", 1)
    store.close()


def test_a_play_row_changed_after_delivery_is_delivered_again(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.record_play(play("news@1", outcome="playing"))
    store.record_play(play("other@1"))
    assert drain(store, "play_log") == [(1, "news@1 playing"), (2, "other@1 completed")]
    store.record_play(play("news@1", outcome="completed"))  # the row is completed after delivery
    assert drain(store, "play_log") == [(3, "news@1 completed")]
    store.close()


# -- retention -------------------------------------------------------------------------------------

SMALL = Retention(play_log_days=1, play_log_max_rows=1000, events_days=1, events_max_rows=1000)


def keys(store: Store) -> set[str]:
    return {row.key for row in store.play_log()}


def test_retention_removes_only_delivered_rows_older_than_the_limit(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    old = NOW - timedelta(days=3)
    store.record_play(play("old-delivered@1", start=old))
    store.record_play(play("old-playing@1", outcome="playing", start=old))
    store.record_play(play("new-delivered@1"))
    store.mark_delivered("play_log", 3)
    store.record_play(play("old-undelivered@1", start=old))
    removed = store.prune(NOW, SMALL)
    assert removed["play_log"] == 1
    assert keys(store) == {"old-playing@1", "new-delivered@1", "old-undelivered@1"}
    store.close()


def test_retention_removes_delivered_events_older_than_the_limit(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    delivered = store.add_event(EventKind.PLAY_FAILED, "delivered")
    store.mark_delivered("events", delivered)
    store.add_event(EventKind.PLAY_FAILED, "not yet delivered")
    later = datetime.now(UTC) + timedelta(days=2)
    assert store.prune(datetime.now(UTC), SMALL)["events"] == 0  # delivered but recent
    assert store.prune(later, SMALL)["events"] == 1
    assert [row["detail"] for row in store.recent_events(10)] == ["not yet delivered"]
    store.close()


def test_retention_caps_the_tables_but_never_drops_a_playing_or_undelivered_row(tmp_path: Path) -> None:
    capped = Retention(play_log_days=400, play_log_max_rows=3, events_days=90, events_max_rows=3)
    store = Store.open(tmp_path)
    store.record_play(play("a-playing@1", outcome="playing", start=NOW - timedelta(hours=5)))
    for hour in range(4, 0, -1):
        store.record_play(play(f"b{hour}@1", start=NOW - timedelta(hours=hour)))
    assert store.prune(NOW, capped)["play_log"] == 0, "an undelivered row is never dropped"
    store.mark_delivered("play_log", 4)  # a-playing, b4, b3, b2 delivered; b1 not yet
    assert store.prune(NOW, capped)["play_log"] == 2
    assert keys(store) == {"a-playing@1", "b2@1", "b1@1"}
    errors = [store.add_event(EventKind.PLAY_FAILED, f"error {i}") for i in range(2)]
    for i in range(3):
        store.add_event(EventKind.COMMAND, f"info {i}")
    assert store.prune(NOW, capped)["events"] == 2
    details = [row["detail"] for row in reversed(store.recent_events(10))]
    assert details == ["error 0", "error 1", "info 2"], "the oldest info events go first"
    for i in range(3):
        store.add_event(EventKind.PLAY_FAILED, f"error {i + 2}")
    store.prune(NOW, capped)
    details = [row["detail"] for row in reversed(store.recent_events(10))]
    assert details == ["error 2", "error 3", "error 4"], "then the oldest of any kind"
    assert errors[0] < store.add_event(EventKind.COMMAND, "next"), "numbers are never reused"
    store.close()


def test_the_events_cap_never_drops_a_security_event(tmp_path: Path) -> None:
    capped = Retention(events_max_rows=3)
    store = Store.open(tmp_path)
    security = [kind for kind in EventKind if kind.security]
    assert {k.value for k in security} >= {"command.refused", "clock.central_refused"}
    for index in range(5):
        store.add_event(security[index % len(security)], f"forged {index}")
        store.add_event(EventKind.PLAY_FAILED, f"error {index}")
        store.add_event(EventKind.COMMAND, f"info {index}")
    store.prune(NOW, capped)
    details = [row["detail"] for row in reversed(store.recent_events(100))]
    assert details == [f"forged {index}" for index in range(5)], "only security events are left"
    store.close()


def test_after_retention_new_plays_are_still_delivered(tmp_path: Path) -> None:
    """Retention may remove every row, the newest included: the next row must still come after
    the delivered cursor, or the link would never send it."""
    store = Store.open(tmp_path)
    store.record_play(play("old@1", start=NOW - timedelta(days=3)))
    assert drain(store, "play_log") == [(1, "old@1 completed")]
    assert store.prune(NOW, SMALL)["play_log"] == 1
    store.record_play(play("new@1"))
    assert drain(store, "play_log") == [(2, "new@1 completed")]
    store.close()


# -- the link against the agent's writes, in any order ---------------------------------------------


class OutboxMachine(RuleBasedStateMachine):
    """The agent writes and updates rows, the store is reopened and pruned; the link drains from
    its cursor.  Whatever the order, the link gets every change of every row, in order, once."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory(prefix="outbox-")
        self.store = Store.open(Path(self.directory.name))
        self.latest: dict[str, str] = {}  # key -> the outcome the agent wrote last
        self.received: dict[str, str] = {}  # key -> the outcome the link got last
        self.events_written: list[str] = []
        self.events_received: list[str] = []
        self.last_seq = {"events": 0, "play_log": 0}

    @rule(key=st.sampled_from(["news@1", "bell@1", "storm@1"]), outcome=st.sampled_from(["playing", "done"]))
    def write_play(self, key: str, outcome: str) -> None:
        self.store.record_play(play(key, outcome, start=NOW - timedelta(days=2)))
        self.latest[key] = outcome

    @rule()
    def write_event(self) -> None:
        detail = f"e{len(self.events_written)}"
        self.store.add_event(EventKind.COMMAND, detail)
        self.events_written.append(detail)

    @rule(batch=st.integers(min_value=1, max_value=3), stream=st.sampled_from(["events", "play_log"]))
    def deliver_one_batch(self, batch: int, stream: str) -> None:
        if stream == "events":
            rows = [(row["seq"], row["detail"]) for row in self.store.undelivered_events(batch)]
            self.events_received += [detail for _, detail in rows]
        else:
            plays = self.store.undelivered_plays(batch)
            rows = [(seq, record.key) for seq, record in plays]
            self.received.update({record.key: record.outcome for _, record in plays})
        seqs = [seq for seq, _ in rows]
        assert seqs == sorted(set(seqs)) and all(seq > self.last_seq[stream] for seq in seqs)
        if rows:
            self.last_seq[stream] = seqs[-1]
            self.store.mark_delivered(stream, seqs[-1])

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = Store.open(Path(self.directory.name))

    @rule()
    def prune(self) -> None:
        """Everything delivered is old enough to go (rows are two days old, events 'now')."""
        self.store.prune(datetime.now(UTC) + timedelta(days=3), SMALL)

    @invariant()
    def a_full_drain_would_bring_the_link_up_to_date(self) -> None:
        pending = self.store.undelivered_plays(1000)
        assert all(seq > self.last_seq["play_log"] for seq, _ in pending)
        received = {**self.received, **{record.key: record.outcome for _, record in pending}}
        assert received == self.latest, "a change the link would never get"
        events = self.store.undelivered_events(1000)
        assert all(row["seq"] > self.last_seq["events"] for row in events)
        assert self.events_received + [row["detail"] for row in events] == self.events_written

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()


def test_the_link_gets_every_change_once_and_in_order() -> None:
    run_state_machine_as_test(
        OutboxMachine, settings=settings(max_examples=60, stateful_step_count=30, deadline=None)
    )


# -- event kinds -----------------------------------------------------------------------------------

# Wire names the central server will store: a kind may be added, never renamed or removed.
PUBLISHED = {
    "agent.started", "agent.stopped", "clock.trusted", "clock.untrusted", "clock.watermark_dropped",
    "schedule.loaded", "schedule.refused", "play.failed", "play.cut_by_restart", "command",
    "command.refused", "fm.unavailable", "fm.relay_on", "fm.relay_off", "fm.stream_ended",
    "fm.carrier_present", "fm.carrier_lost", "fm.source_reopened", "fm.source_stalled",
    "fm.source_open_failed", "fm.source_error", "fm.source_finished", "fm.source_fault",
    "fm.source_ok", "player.fault", "storage.fault", "storage.recovered",
}  # fmt: skip


def test_event_kinds_are_distinct_wire_names_that_are_never_renamed() -> None:
    values = [kind.value for kind in EventKind]
    assert len(EventKind.__members__) == len(values), "two kinds share a wire name (an enum alias)"
    assert set(values) >= PUBLISHED, f"renamed or removed: {sorted(PUBLISHED - set(values))}"
    assert all(re.fullmatch(r"[a-z]+(\.[a-z_]+)?", value) for value in values)
    assert all(isinstance(kind.severity, Severity) for kind in EventKind)


def test_every_event_the_fm_receiver_emits_has_a_kind() -> None:
    """fm_receiver (below agent) names its events with strings; one without a kind would be
    recorded as a generic fm.source_error.  mypy cannot see this, so the sources are read."""
    emitted = set()
    for path in (REPO / "fm_receiver").glob("*.py"):
        emitted |= set(re.findall(r"[\"'](fm\.[a-z_]+)[\"']", path.read_text(encoding="utf-8")))
    assert emitted, "the FM receiver emits no events?"
    assert emitted <= {kind.value for kind in EventKind}, sorted(emitted - {k.value for k in EventKind})


def test_an_event_is_stored_with_its_kinds_severity(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for kind in EventKind:
        store.add_event(kind, kind.name)
    rows = store.recent_events(len(EventKind))
    assert {(row["kind"], row["severity"]) for row in rows} == {
        (k.value, k.severity.value) for k in EventKind
    }
    store.close()


def test_the_agent_prunes_only_on_a_trusted_clock(tmp_path: Path) -> None:
    """Retention measures age on the wall clock: a clock that is wrong (years ahead after a bad
    fake-hwclock) would throw away the delivered rows the box must keep for the yearly report."""
    write_schedule(tmp_path)
    config = write_config(tmp_path, require_sync=True)
    store = Store.open(tmp_path / "state")
    store.record_play(play("old@1", start=datetime.now(UTC) - timedelta(days=401)))
    store.mark_delivered("play_log", 1)
    store.close()
    synced = [False]
    clock = ClockTrust(True, kernel_synced=lambda: synced[0], sync_markers=(), agent_marker=None)
    with running_agent(config, clock=clock) as box:
        box.wait_passes(2, timeout=5)
        assert [row.key for row in box.play_log()] == ["old@1"], "pruned on an untrusted clock"
        synced[0] = True
        box.wait_for(lambda: box.play_log() == [], timeout=5)


def test_undelivered_counts_agree_with_the_rows_and_follow_the_cursor(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    try:
        for index in range(5):
            store.add_event(EventKind.COMMAND, f"event {index}")
        rows = store.undelivered_events(1000)
        assert store.undelivered_counts()["events"] == len(rows)
        store.mark_delivered("events", rows[2]["seq"])
        assert store.undelivered_counts()["events"] == len(rows) - 3
        assert [r["seq"] for r in store.undelivered_events(10, after=rows[3]["seq"])] == [rows[4]["seq"]]
    finally:
        store.close()
