"""The local store: a real SQLite file in WAL mode, rows that survive reopening."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.events import EventKind
from agent.store import PlayRecord, Store
from foundation.errors import StoreError


def record(key: str, outcome: str = "completed", start: str = "2026-11-26T06:30:00.000+00:00") -> PlayRecord:
    return PlayRecord(
        key=key,
        item_id=key.split("@")[0],
        audio="a.wav",
        level="normal",
        zones=("zone-1",),
        scheduled_start=start,
        actual_start=start,
        ended=None,
        outcome=outcome,
        reason="",
    )


def test_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    mode = store.db.conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = store.db.conn.execute("PRAGMA synchronous").fetchone()[0]
    store.close()
    assert mode == "wal"
    assert sync == 2  # FULL


def test_play_row_is_updated_in_place_and_survives_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.record_play(record("news@1", outcome="playing"))
    store.record_play(record("news@1", outcome="completed"))
    store.close()
    again = Store.open_readonly(tmp_path)
    rows = again.play_log()
    again.close()
    assert [(r.key, r.outcome) for r in rows] == [("news@1", "completed")]


def test_committed_row_survives_a_killed_writer(tmp_path: Path) -> None:
    # A process that writes, then dies without closing (as at a power cut), loses nothing committed.
    script = (
        f"import os, sys; sys.path.insert(0, {str(Path.cwd())!r})\n"
        "from pathlib import Path\n"
        "from agent.store import Store, PlayRecord\n"
        f"s = Store.open(Path({str(tmp_path)!r}))\n"
        "s.record_play(PlayRecord('k@1','k','a.wav','normal',('z',),'2026-01-01T00:00:00.000+00:00',None,None,'missed','r'))\n"
        "os._exit(9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == 9
    store = Store.open_readonly(tmp_path)
    assert [r.outcome for r in store.play_log()] == ["missed"]
    store.close()


def test_since_filters_and_limit_keeps_latest(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for hour in range(5):
        store.record_play(record(f"n{hour}@x", start=f"2026-11-26T0{hour}:00:00.000+00:00"))
    assert [r.key for r in store.play_log(since="2026-11-26T03:00:00")] == ["n3@x", "n4@x"]
    assert [r.key for r in store.play_log(limit=2)] == ["n3@x", "n4@x"]
    store.close()


def test_schedule_replacement_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.replace_schedule({"a": {"id": "a"}, "b": {"id": "b"}}, "file")

    class PowerCutMidway(dict[str, dict[str, str]]):
        def items(self):  # type: ignore[override]
            yield "c", {"id": "c"}
            raise OSError("power cut")

    with pytest.raises(OSError):
        store.replace_schedule(PowerCutMidway(), "file")
    assert [s["id"] for s in store.schedule_specs()] == ["a", "b"]
    store.close()


def test_state_and_events(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.put_state("watermark", "2026-11-26T00:00:00")
    store.add_event(EventKind.PLAY_FAILED, "x: missing")
    store.add_event(EventKind.CLOCK_TRUSTED, "ok")
    assert store.get_state("watermark") == "2026-11-26T00:00:00"
    assert store.get_state("nothing", 5) == 5
    assert [e["kind"] for e in store.recent_events(severity="error")] == ["play.failed"]
    store.close()


def test_readonly_without_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="has not run"):
        Store.open_readonly(tmp_path / "nowhere")


def test_readonly_store_refuses_writes(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    store = Store.open_readonly(tmp_path)
    with pytest.raises(sqlite3.OperationalError):
        store.put_state("x", 1)
    store.close()


def test_the_store_does_not_load_numpy_and_leaves_it_importable(tmp_path: Path) -> None:
    # sqlite-utils would import numpy (about 12 MB of RSS) only to convert numpy values.
    script = f"""
import sys
from agent.store import Store, sqlite_utils
store = Store.open(__import__("pathlib").Path({str(tmp_path)!r}))
store.put_state("k", [1, 2])
assert store.get_state("k") == [1, 2]
assert "numpy" not in sys.modules and "pandas" not in sys.modules
assert sqlite_utils.db.np is None
import numpy  # the FM receiver imports it for itself
print(numpy.zeros(2).sum())
"""
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0.0"


def test_the_store_defers_dateutils_parser_until_something_uses_it(tmp_path: Path) -> None:
    # sqlite-utils' date recipes import dateutil.parser (with dateutil.tz, about 2 MB of RSS).
    script = f"""
import sys
from datetime import datetime
from agent.store import Store, sqlite_utils
store = Store.open(__import__("pathlib").Path({str(tmp_path)!r}))
store.put_state("k", "v")
assert "dateutil.parser" not in sys.modules and "dateutil.tz" not in sys.modules, sorted(sys.modules)
from scheduler.rules import base_rule
rule = base_rule("FREQ=DAILY;BYHOUR=6;BYMINUTE=0;UNTIL=20261231T000000", datetime(2026, 1, 1))
print(rule.after(datetime(2026, 11, 26)))  # UNTIL made dateutil load its real parser
import dateutil.parser
assert sys.modules["dateutil.parser"] is dateutil.parser and hasattr(dateutil.parser, "isoparse")
from sqlite_utils import recipes
print(recipes.parsedate("26/11/2026", dayfirst=True))  # the recipe's stand-in reaches the parser
try:
    recipes.parsedate("not a date")
except ValueError as error:
    print(type(error).__name__)
"""
    repo = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2026-11-26", "06:00:00", "2026-11-26", "ParserError"]
