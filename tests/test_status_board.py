"""The status snapshot keeps what does not change between passes, and only that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.control import request
from agent.events import EventKind
from agent.store import Store
from tests.agent_harness import at, running_agent, write_config, write_schedule


def test_status_shows_a_new_error_and_moves_next_on(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        f"{{id: gone, audio: nowhere.wav, at: '{at(1.5)}'}}",
        f"{{id: later, audio: nowhere.wav, at: '{at(3600)}'}}",
    )
    with running_agent(write_config(tmp_path)) as box:
        socket = box.config.control.socket
        before = request(socket, "status")
        box.wait_for(lambda: box.outcome("gone") == "failed", timeout=8)
        box.wait_passes(2, timeout=5)
        after = request(socket, "status")
    assert [n["item"] for n in before["next"]] == ["gone", "later"] and before["errors"] == []
    assert [n["item"] for n in after["next"]] == ["later"]
    assert [(e["kind"], e["detail"][:5]) for e in after["errors"]] == [("play.failed", "gone:")]


def test_the_store_says_when_its_events_changed(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    try:
        seen = store.events_version
        seq = store.add_event(EventKind.PLAY_FAILED, "a: gone")
        assert store.events_version != seen
        seen = store.events_version
        store.prune(datetime.now(UTC))  # nothing is old enough
        assert store.events_version == seen
        store.mark_delivered("events", seq)
        assert store.prune(datetime.now(UTC) + timedelta(days=365))["events"] == 1
        assert store.events_version != seen
        assert store.recent_events(5, severity="error") == []
    finally:
        store.close()
