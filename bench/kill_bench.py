"""kill -9 cycles: does every occurrence that fell due keep exactly one row?

    .venv/bin/python -m bench.kill_bench [--cycles 30] [--seed 7]

The real ``loa-agent run`` process (null player, gpiozero mock pins) plays a schedule of items
every two seconds, some long enough that the next one waits behind them.  It is killed with
SIGKILL at a random instant, started again at once, ``--cycles`` times; then it runs until
everything due has an outcome.  Counted at the end, from the play log: occurrences that fell due
with no row (lost), rows left unfinished, and rows per outcome.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.store import Store
from drivers.wav_samples import tone, write_wav
from foundation.errors import StoreError

FINAL = {"completed", "interrupted", "failed", "missed", "skipped"}
SPACING = 2.0  # seconds between scheduled items


def _setup(directory: Path, count: int) -> list[str]:
    write_wav(directory / "short.wav", tone(440, 1.0, 22050), 22050)
    write_wav(directory / "long.wav", tone(660, 3.0, 22050), 22050)
    start = datetime.now(UTC) + timedelta(seconds=3)
    keys, lines = [], []
    for index in range(count):
        at = start + timedelta(seconds=index * SPACING)
        audio = "long.wav" if index % 4 == 0 else "short.wav"
        lines.append(f"  - {{id: item-{index}, audio: {audio}, at: '{at.isoformat()}'}}")
        keys.append(f"item-{index}@{at.isoformat()}")
    (directory / "schedule.yaml").write_text("items:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (directory / "agent.yaml").write_text(
        """device: {id: bench-kill, timezone: Asia/Ho_Chi_Minh}
storage: {dir: state}
audio: {backend: null}
gpio:
  pin_factory: mock
  amplifiers: [{name: zone-1, pin: 17}]
  preroll: 200ms
  postroll: 500ms
schedule: {file: schedule.yaml, catch_up: 5s, max_delay: 20s}
clock: {require_sync: false}
control: {socket: agent.sock}
""",
        encoding="utf-8",
    )
    return keys


def _rows(state: Path) -> dict[str, dict[str, Any]]:
    try:
        store = Store.open_readonly(state)
    except StoreError:
        return {}
    try:
        return {record.key: record.__dict__ for record in store.play_log()}
    except sqlite3.Error:
        return {}
    finally:
        store.close()


def _start(directory: Path) -> subprocess.Popen[bytes]:
    loa_agent = Path(sys.executable).parent / "loa-agent"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [str(loa_agent), "--config", str(directory / "agent.yaml"), "run"]
    return subprocess.Popen(
        command, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def run(cycles: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="loa-kill-") as name:
        directory = Path(name)
        keys = _setup(directory, count=int(cycles * 2.2 / SPACING) + 8)
        began = time.monotonic()
        for _ in range(cycles):
            agent = _start(directory)
            time.sleep(rng.uniform(0.3, 4.0))
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
        killed_at = datetime.now(UTC)
        agent = _start(directory)
        try:
            due = [key for key in keys if datetime.fromisoformat(key.split("@", 1)[1]) <= killed_at]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = _rows(directory / "state")
                if all(rows.get(key, {}).get("outcome") in FINAL for key in due):
                    break
                time.sleep(0.5)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=15)
        rows = _rows(directory / "state")
    lost = [key for key in due if key not in rows]
    unfinished = [key for key in due if key in rows and rows[key]["outcome"] not in FINAL]
    return {
        "cycles": cycles,
        "seconds": round(time.monotonic() - began, 1),
        "due": len(due),
        "lost": len(lost),
        "unfinished": len(unfinished),
        "outcomes": dict(Counter(rows[key]["outcome"] for key in due if key in rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(run(args.cycles, args.seed))


if __name__ == "__main__":
    main()
