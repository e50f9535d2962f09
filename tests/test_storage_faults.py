"""A full or read-only card never silences the box: real SQLite, real tmpfs file systems.

The file-system tests mount a small tmpfs (root only; skipped elsewhere), fill it or mount it
read-only, and run the real agent on it: it keeps playing, says "storage" in its faults and on
the LED, keeps its records in memory, and writes them once the storage recovers.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.events import EventKind
from agent.store import PlayRecord, Store
from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file


def record(key: str, outcome: str = "completed") -> PlayRecord:
    now = datetime.now(UTC).isoformat()
    return PlayRecord(key, key, "a.wav", "normal", ("zone-1",), now, now, now, outcome, "")


def test_a_full_database_keeps_writes_in_memory_and_writes_them_later(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    (pages,) = store.db.conn.execute("PRAGMA page_count").fetchone()
    store.db.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    written = 0
    while store.fault is None and written < 10_000:
        store.record_play(record(f"item-{written}"))
        written += 1
    for index in range(written, written + 300):
        store.record_play(record(f"item-{index}"))
    store.add_event(EventKind.PLAY_FAILED, "while full")
    store.put_state("watermark", "2026-11-26T00:00:00")
    assert store.fault == "the storage is full"
    assert store.buffer.pending == 303
    store.buffer._last_try = -1e9  # the retry waits a few seconds; the test need not
    assert not store.retry_writes()  # still full: nothing lost, nothing written
    store.db.conn.execute("PRAGMA max_page_count = 1073741823")
    store.buffer._last_try = -1e9
    assert store.retry_writes()
    assert store.fault is None and store.buffer.pending == 0
    assert {r.key for r in store.play_log()} == {f"item-{index}" for index in range(written + 300)}
    kinds = [event["kind"] for event in store.recent_events(5)]
    assert kinds[:2] == ["storage.recovered", "play.failed"]
    assert store.get_state("watermark") == "2026-11-26T00:00:00"
    store.close()


def test_the_same_row_kept_twice_is_written_once_in_its_latest_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    (pages,) = store.db.conn.execute("PRAGMA page_count").fetchone()
    store.db.conn.execute(f"PRAGMA max_page_count = {pages}")
    filler = 0
    while store.fault is None and filler < 10_000:
        store.record_play(record(f"filler-{filler}"))
        filler += 1
    store.record_play(record("news", "playing"))
    store.record_play(record("news", "completed"))
    assert store.fault is not None
    store.db.conn.execute("PRAGMA max_page_count = 1073741823")
    store.buffer._last_try = -1e9
    assert store.retry_writes()
    rows = {r.key: r for r in store.play_log()}
    assert rows["news"].outcome == "completed"
    store.close()


def test_a_corrupt_store_is_set_aside_and_a_new_one_starts(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not a database, it is what a power cut left" * 100)
    store = Store.open(tmp_path)
    assert store.fault is None
    assert any(path.name.startswith("state.db.corrupt-") for path in tmp_path.iterdir())
    assert [event["kind"] for event in store.recent_events(5)] == ["storage.fault"]
    store.close()


# -- real file systems ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


needs_root = pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")


@needs_root
def test_agent_starts_and_plays_on_a_read_only_card(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    config = write_config(tmp_path)
    with tmpfs(tmp_path / "state", "4M") as state:
        write_schedule(tmp_path, f"{{id: before, audio: tone-440Hz-0.5s.wav, at: '{at(1.0)}'}}")
        with running_agent(config) as box:  # a first run leaves a store with the schedule in it
            box.wait_for(lambda: box.outcome("before") == "completed", timeout=8)
        remount(state, "ro")
        write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(2.0)}'}}")
        with running_agent(config) as box:
            agent = box.agent
            assert agent.store.fault is not None and "read-only" in agent.store.fault
            box.wait_for(lambda: agent.play_log.started_at == {} and agent.passes > 3, timeout=5)
            box.wait_for(lambda: any(key.startswith("news@") for key in _kept_keys(agent.store)), timeout=8)
            box.wait_for(lambda: agent.led is not None and agent.led.code.name == "STORAGE", timeout=3)
            status = agent.status()
            assert any("storage" in fault for fault in status["faults"])
            alarms = {alarm["code"]: alarm for alarm in status["health"]["alarms"]}
            assert "storage.readonly" in alarms and status["health"]["storage"]["read_only"] is True
            assert status["storage"]["kept_in_memory"] > 0
            remount(state, "rw")
            box.wait_for(lambda: agent.store.fault is None, timeout=15)
            box.wait_for(lambda: box.outcome("news") == "completed", timeout=5)
        assert box.outcome("before") == "completed"


@needs_root
def test_agent_keeps_playing_when_the_card_fills_up(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    config = write_config(tmp_path)
    with tmpfs(tmp_path / "state", "2M") as state:
        write_schedule(
            tmp_path,
            f"{{id: first, audio: tone-440Hz-0.5s.wav, at: '{at(3.0)}'}}",
            f"{{id: second, audio: tone-440Hz-0.5s.wav, at: '{at(5.0)}'}}",
        )
        with running_agent(config) as box:
            agent = box.agent
            ballast = state / "ballast"
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={ballast}", "bs=64k"], capture_output=True, check=False
            )
            box.wait_for(lambda: agent.store.fault == "the storage is full", timeout=8)
            box.wait_for(lambda: agent.play_log.started_at != {} or agent.passes > 0, timeout=1)
            box.wait_for(
                lambda: any(key.startswith("second@") for key in _kept_keys(agent.store)), timeout=10
            )
            player_played = [played.token for played in agent.player.played]  # type: ignore[attr-defined]
            assert any(token.startswith("first@") for token in player_played)
            assert any(token.startswith("second@") for token in player_played)
            ballast.unlink()
            box.wait_for(lambda: agent.store.fault is None, timeout=15)
            box.wait_for(lambda: box.outcome("second") == "completed", timeout=5)
        assert box.outcome("first") == "completed"


def _kept_keys(store: Store) -> list[str]:
    return [key[1] for key in store.buffer._kept if isinstance(key, tuple) and key[0] == "play"]
