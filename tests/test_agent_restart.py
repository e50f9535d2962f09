"""Every occurrence that fell due gets exactly one row, whatever happens to the agent process.

The real ``loa-agent run`` process (null player, gpiozero mock pins), stopped with SIGTERM or
killed with SIGKILL while an item waits behind a long one, then started again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.store import PlayRecord, Store
from foundation.errors import StoreError
from tests.agent_harness import at, write_config, write_schedule
from tests.audio_fixtures import tone_file

LOA_AGENT = Path(sys.executable).parent / "loa-agent"


def rows(state: Path) -> dict[str, PlayRecord]:
    """The play log by item, as another process reads it (empty until the agent made its store)."""
    try:
        store = Store.open_readonly(state)
    except StoreError:
        return {}
    try:
        return {record.item_id: record for record in store.play_log()}
    except sqlite3.Error:
        return {}
    finally:
        store.close()


def wait_until(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {why}")


def start(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [str(LOA_AGENT), "--config", str(config), "run"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_an_item_waiting_at_a_restart_keeps_its_row_and_plays_after(
    tmp_path: Path, how: signal.Signals
) -> None:
    tone_file(tmp_path, 440, 8.0)
    tone_file(tmp_path, 880, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: long, audio: tone-440Hz-8s.wav, at: '{at(2.0)}'}}",
        f"{{id: short, audio: tone-880Hz-0.5s.wav, at: '{at(3.0)}'}}",
    )
    config = write_config(tmp_path)
    state = tmp_path / "state"
    agent = start(config)
    try:
        wait_until(lambda: rows(state).get("short", None) is not None, 10, "the short item's row")
        assert rows(state)["short"].outcome == "waiting"
        assert rows(state)["long"].outcome == "playing"
        agent.send_signal(how)
        agent.wait(timeout=15)
    finally:
        agent.kill()
    assert rows(state)["short"].outcome == "waiting"  # its row survived the stop
    again = start(config)
    try:
        wait_until(lambda: rows(state)["short"].outcome == "completed", 15, "the waiting item played")
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=15)
    final = rows(state)
    assert set(final) == {"long", "short"}
    assert final["long"].outcome == "interrupted"
    assert final["short"].actual_start is not None
