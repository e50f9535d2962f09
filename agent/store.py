"""The agent's local store: one SQLite file (WAL) under ``storage.dir``.

Tables:
- ``play_log``: proof of play, one row per occurrence the agent dealt with.  A row is written when
  playback is asked for (outcome ``playing``) and completed when it ends, so a power cut leaves a row
  that the next start closes as ``interrupted`` ("agent stopped while playing").
- ``state``: small JSON values (scheduler watermark, last schedule load, ...).
- ``events``: what went wrong or changed, for ``loa status`` and, later, telemetry.
- ``schedule_items``: the schedule in force, so the agent keeps playing it from local state.

Writes use ``synchronous=FULL`` in WAL mode so a committed row survives a power cut.  Only the
daemon's main thread writes; the CLI opens the file read-only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from foundation.errors import StoreError

logger = logging.getLogger(__name__)

DB_NAME = "state.db"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PlayRecord:
    """One row of the play log."""

    key: str
    item_id: str
    audio: str
    level: str
    zones: tuple[str, ...]
    scheduled_start: str
    actual_start: str | None
    ended: str | None
    outcome: str
    reason: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PlayRecord:
        return cls(
            key=row["key"],
            item_id=row["item_id"],
            audio=row["audio"],
            level=row["level"],
            zones=tuple(json.loads(row["zones"] or "[]")),
            scheduled_start=row["scheduled_start"],
            actual_start=row["actual_start"],
            ended=row["ended"],
            outcome=row["outcome"],
            reason=row["reason"] or "",
        )


def iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with milliseconds, the store's one time format."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc


class Store:
    """The agent's SQLite store.  Create with :meth:`open` (daemon) or :meth:`open_readonly` (CLI)."""

    def __init__(self, db: sqlite_utils.Database, path: Path, readonly: bool) -> None:
        self.db = db
        self.path = path
        self.readonly = readonly

    @classmethod
    def open(cls, storage_dir: Path) -> Store:
        path = storage_dir / DB_NAME
        conn = _connect(path, readonly=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            store = cls(sqlite_utils.Database(conn), path, readonly=False)
            store._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        logger.info("store %s opened", path)
        return store

    @classmethod
    def open_readonly(cls, storage_dir: Path) -> Store:
        path = storage_dir / DB_NAME
        if not path.exists():
            raise StoreError(f"no store at {path}: the agent has not run with this storage.dir yet")
        return cls(sqlite_utils.Database(_connect(path, readonly=True)), path, readonly=True)

    def close(self) -> None:
        self.db.conn.close()

    def _migrate(self) -> None:
        self.db.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS play_log (
                key TEXT PRIMARY KEY, item_id TEXT NOT NULL, audio TEXT NOT NULL,
                level TEXT NOT NULL, zones TEXT NOT NULL, scheduled_start TEXT NOT NULL,
                actual_start TEXT, ended TEXT, outcome TEXT NOT NULL, reason TEXT,
                recorded_at TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS play_log_start ON play_log (scheduled_start);
            CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL,
                updated_at TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL, severity TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS schedule_items (id TEXT PRIMARY KEY, spec TEXT NOT NULL,
                source TEXT NOT NULL, loaded_at TEXT NOT NULL);
            """
        )
        self.db.conn.commit()
        self.put_state("schema_version", SCHEMA_VERSION)

    # -- play log -------------------------------------------------------------------------------

    def record_play(self, record: PlayRecord) -> None:
        """Insert or update the row of ``record.key`` (one row per occurrence)."""
        row = {
            "key": record.key,
            "item_id": record.item_id,
            "audio": record.audio,
            "level": record.level,
            "zones": json.dumps(list(record.zones)),
            "scheduled_start": record.scheduled_start,
            "actual_start": record.actual_start,
            "ended": record.ended,
            "outcome": record.outcome,
            "reason": record.reason,
            "recorded_at": iso(datetime.now(UTC)),
        }
        self.db.table("play_log").upsert(row, pk="key")

    def play_log(self, since: str | None = None, limit: int | None = None) -> list[PlayRecord]:
        """Rows by scheduled start, oldest first; ``since`` is a UTC ISO string."""
        sql = "SELECT * FROM play_log"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE scheduled_start >= ?"
            params.append(since)
        sql += " ORDER BY scheduled_start, key"
        rows = [PlayRecord.from_row(r) for r in self.db.query(sql, params)]
        return rows[-limit:] if limit else rows

    def unfinished_plays(self) -> list[PlayRecord]:
        rows = self.db.query("SELECT * FROM play_log WHERE outcome = 'playing' ORDER BY scheduled_start")
        return [PlayRecord.from_row(r) for r in rows]

    def handled_keys(self, since: str) -> set[str]:
        rows = self.db.query("SELECT key FROM play_log WHERE scheduled_start >= ?", [since])
        return {r["key"] for r in rows}

    # -- state and events -----------------------------------------------------------------------

    def put_state(self, key: str, value: object) -> None:
        row = {"key": key, "value": json.dumps(value), "updated_at": iso(datetime.now(UTC))}
        self.db.table("state").upsert(row, pk="key")

    def get_state(self, key: str, default: object = None) -> object:
        rows = list(self.db.query("SELECT value FROM state WHERE key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else default

    def add_event(self, severity: str, kind: str, detail: str) -> None:
        row = {"at": iso(datetime.now(UTC)), "severity": severity, "kind": kind, "detail": detail}
        self.db.table("events").insert(row)

    def recent_events(self, limit: int = 10, severity: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, severity, kind, detail FROM events"
        params: list[Any] = []
        if severity:
            sql += " WHERE severity = ?"
            params.append(severity)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return list(self.db.query(sql, params))

    # -- schedule -------------------------------------------------------------------------------

    def replace_schedule(self, specs: Mapping[str, Mapping[str, Any]], source: str) -> None:
        """Replace the stored schedule in one transaction: all old items or all new ones."""
        now = iso(datetime.now(UTC))
        with self.db.conn:
            self.db.conn.execute("DELETE FROM schedule_items")
            self.db.conn.executemany(
                "INSERT INTO schedule_items (id, spec, source, loaded_at) VALUES (?, ?, ?, ?)",
                [(i, json.dumps(s, default=str), source, now) for i, s in specs.items()],
            )

    def schedule_specs(self) -> Iterator[dict[str, Any]]:
        for row in self.db.query("SELECT spec FROM schedule_items ORDER BY id"):
            yield json.loads(row["spec"])
