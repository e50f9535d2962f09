"""The agent's local store: one SQLite file (WAL) under ``storage.dir``.

Tables:
- ``play_log``: proof of play, one row per occurrence the agent dealt with.  A row is written when
  playback is asked for (outcome ``playing``) and completed when it ends, so a power cut leaves a row
  that the next start closes as ``interrupted`` ("agent stopped while playing").  Every write gives
  the row the next ``seq``, so a row's latest state is sent again after it changes.
- ``state``: small JSON values (scheduler watermark, schedule origins, delivered cursors, ...).
- ``events``: the outbox of what went wrong or changed (kinds from ``agent.events.EventKind``);
  ``id`` is the sequence number.
- ``schedule_items``: the last good schedule of each origin (the local file, the central manifest),
  so the agent keeps playing from local state.
- ``telemetry``: samples (agent/telemetry.py); ``id`` is the sequence number.  Thinned as the
  spool grows (agent/spool_policy.py).

The link delivers ``events``, ``play_log`` and ``telemetry`` in ``seq`` order from a delivered
cursor kept in ``state`` (``outbox.<stream>``), so each record is sent in order, once.
Retention (:meth:`Store.prune`, run hourly once the clock is trusted) keeps the tables bounded without losing
what the province needs: see ``RETENTION`` and docs/OPERATIONS.md.

Writes use ``synchronous=FULL`` in WAL mode so a committed row survives a power cut.  Only the
daemon's main thread writes; the CLI opens the file read-only.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from agent.events import EventKind
from agent.spool_policy import SPOOL_POLICY, SpoolPolicy, droppable_events, thin_telemetry
from agent.write_buffer import STORAGE_ERRORS, WriteBuffer
from foundation.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils


def _import_sqlite_utils() -> ModuleType:
    """sqlite-utils without numpy and pandas, and without dateutil's parser until it is used.

    sqlite-utils imports numpy and pandas whenever they are installed, only to convert their
    values, which the store never passes it; numpy alone is about 12 MB of the daemon's RSS.  A box
    relaying FM imports numpy itself, later or earlier, as usual.  Its date recipes import
    ``dateutil.parser`` (with ``dateutil.tz``, about 2 MB) for ``sqlite-utils convert``, which the
    store never runs: they get a stand-in that imports the real parser on first use.  The
    scheduler's rules load the real one themselves when a rule has an UNTIL (dateutil.rrule does).
    """
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: sqlite-utils goes without
    stand_in = _deferred_module(DATE_PARSER) if DATE_PARSER not in sys.modules else None
    if stand_in is not None:
        sys.modules[DATE_PARSER] = stand_in
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
        if stand_in is not None and sys.modules.get(DATE_PARSER) is stand_in:
            del sys.modules[DATE_PARSER]  # whoever imports it next gets the real module


DATE_PARSER = "dateutil.parser"


def _deferred_module(name: str) -> ModuleType:
    """A module that imports ``name`` (once it is out of sys.modules) when an attribute is read."""
    stand_in = ModuleType(name, f"stands in for {name} until it is used")

    def forward(attribute: str) -> Any:
        return getattr(importlib.import_module(name), attribute)

    setattr(stand_in, "__getattr__", forward)  # noqa: B010  # PEP 562: read for missing attributes
    return stand_in


sqlite_utils = _import_sqlite_utils()

logger = logging.getLogger(__name__)

DB_NAME = "state.db"
T = TypeVar("T")

SCHEMA_VERSION = 2
LOCAL_ORIGIN = "local"  # the local schedule file
STREAMS = ("events", "play_log", "telemetry")  # the outbox's streams, each with its cursor


@dataclass(frozen=True)
class Retention:
    """How long records are kept (docs/OPERATIONS.md, "What the box keeps")."""

    # Delivered play-log rows are kept 400 days: the yearly report (due 15-20 December) covers the
    # calendar year, and a box may have to answer for it locally.  Past ``play_log_max_rows`` the
    # oldest delivered rows go; an undelivered row is never dropped.
    play_log_days: int = 400
    play_log_max_rows: int = 500_000
    # Events: delivered ones 90 days; past ``events_max_rows`` the oldest info events go first,
    # then the oldest of any kind but a security event (agent/spool_policy.py), never dropped.
    events_days: int = 90
    events_max_rows: int = 100_000


RETENTION = Retention()


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
    origin: str = LOCAL_ORIGIN  # local (schedule file), local-command (loa play), central, ...

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
            origin=row["origin"] or LOCAL_ORIGIN,
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
        self.buffer = WriteBuffer()  # writes the storage refuses, kept until it takes them again
        self.degraded = False  # opened without write access: reopen when the storage recovers
        # Bumped whenever this store adds or removes events: readers keep what they read until then.
        self.events_version = 0

    @classmethod
    def open(cls, storage_dir: Path) -> Store:
        """The daemon's store.  It always opens: on a read-only or full card, or a corrupt file, it
        opens what it can read (or an empty store in memory), reports a storage fault, keeps every
        write in memory and writes them once the storage takes writes again."""
        path = storage_dir / DB_NAME
        try:
            store = cls(_open_writable(path), path, readonly=False)
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                return cls._degraded(path, exc)
            store = cls(_open_writable(_set_aside(path)), path, readonly=False)
            store.add_event(
                EventKind.STORAGE_FAULT, f"the store was corrupt ({exc}); set aside, a new one started"
            )
        except (StoreError, OSError) as exc:
            return cls._degraded(path, exc)
        logger.info("store %s opened", path)
        return store

    @classmethod
    def _degraded(cls, path: Path, exc: BaseException) -> Store:
        db = _open_for_reading(path)
        store = cls(db, path, readonly=False)
        store.degraded = True
        store.buffer.fail(_read_only_cause(path) or exc.__cause__ or exc)
        logger.error("store %s opened without write access: %s", path, store.buffer.fault)
        store.add_event(EventKind.STORAGE_FAULT, store.buffer.fault or str(exc))
        return store

    @property
    def fault(self) -> str | None:
        """Why the store cannot be written now, or None."""
        return self.buffer.fault

    def retry_writes(self) -> bool:
        """Write what the storage refused before (the main loop calls this on every pass; it tries
        at most every few seconds).  True when nothing is kept."""
        was_faulty = self.fault is not None
        written = self.buffer.retry(self._reopen if self.degraded else None)
        if written and was_faulty:
            self._put_state("storage_recovered_at", iso(datetime.now(UTC)))
            self._add_event(
                EventKind.STORAGE_RECOVERED, f"kept records written; {self.buffer.dropped} dropped"
            )
        return written

    def _reopen(self) -> None:
        db = _open_writable(self.path)
        self.db.conn.close()
        self.db, self.degraded = db, False
        logger.info("store %s writable again", self.path)

    @classmethod
    def open_readonly(cls, storage_dir: Path) -> Store:
        path = storage_dir / DB_NAME
        if not path.exists():
            raise StoreError(f"no store at {path}: the agent has not run with this storage.dir yet")
        conn = _connect(path, readonly=True)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # The crew (group loa) may read the store but not make its WAL index: with the agent
            # stopped there is none to share and nobody writes, so the file is read as it is.
            conn.close()
            conn = sqlite3.connect(
                f"file:{path}?mode=ro&immutable=1", uri=True, timeout=5.0, check_same_thread=False
            )
        except sqlite3.DatabaseError:
            pass  # a corrupt file: each reader says so where it reads, as the status board does
        return cls(sqlite_utils.Database(conn), path, readonly=True)

    def close(self) -> None:
        self.db.conn.close()

    # -- play log -------------------------------------------------------------------------------

    def record_play(self, record: PlayRecord) -> None:
        """Insert or update the row of ``record.key`` (one row per occurrence)."""
        self._write(("play", record.key), lambda: self._record_play(record))

    def _record_play(self, record: PlayRecord) -> None:
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
            "origin": record.origin,
            "recorded_at": iso(datetime.now(UTC)),
        }
        with self.db.conn:
            # After the cursor even when retention has removed every row up to it: a reused number
            # would be taken as delivered and never sent.
            (last,) = self.db.conn.execute(
                "SELECT MAX(COALESCE(MAX(seq), 0), ?) FROM play_log", [self._cursor("play_log")]
            ).fetchone()
            _upsert(self.db.conn, "play_log", {**row, "seq": last + 1})

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
        sql = "SELECT * FROM play_log WHERE outcome = 'playing' ORDER BY scheduled_start"
        return self._read(list[PlayRecord](), lambda: [PlayRecord.from_row(r) for r in self.db.query(sql)])

    def waiting_plays(self) -> list[PlayRecord]:
        """Rows of occurrences that were waiting for the speakers when the agent stopped."""
        sql = "SELECT * FROM play_log WHERE outcome = 'waiting' ORDER BY scheduled_start"
        return self._read(list[PlayRecord](), lambda: [PlayRecord.from_row(r) for r in self.db.query(sql)])

    def handled_keys(self, since: str) -> set[str]:
        """Keys of occurrences dealt with (started or recorded) since ``since``; not waiting ones."""
        sql = "SELECT key FROM play_log WHERE scheduled_start >= ? AND outcome != 'waiting'"
        return self._read(set[str](), lambda: {r["key"] for r in self.db.query(sql, [since])})

    def _write(self, key: tuple[str, str] | None, action: Callable[[], Any]) -> Any:
        """A write the daemon must not lose: kept in memory while the storage refuses it.  The
        CLI's read-only store refuses writes outright."""
        if self.readonly:
            return action()
        return self.buffer.write(key, action)

    def _read(self, default: T, read: Callable[[], T]) -> T:
        """A read the daemon can do without (a damaged store must not stop the loop)."""
        try:
            return read()
        except STORAGE_ERRORS as exc:
            logger.error("store %s cannot be read: %s", self.path, exc)
            return default

    # -- state and events -----------------------------------------------------------------------

    def put_state(self, key: str, value: object) -> None:
        self._write(("state", key), lambda: self._put_state(key, value))

    def _put_state(self, key: str, value: object) -> None:
        row = {"key": key, "value": json.dumps(value), "updated_at": iso(datetime.now(UTC))}
        with self.db.conn:
            _upsert(self.db.conn, "state", row)

    def get_state(self, key: str, default: object = None) -> object:
        rows = self._read(
            list[dict[str, Any]](),
            lambda: list(self.db.query("SELECT value FROM state WHERE key = ?", [key])),
        )
        return json.loads(rows[0]["value"]) if rows else default

    def add_event(self, kind: EventKind, detail: str) -> int:
        """Append an event to the outbox; returns its sequence number (0 while it is kept in memory)."""
        at = iso(datetime.now(UTC))
        return int(self._write(None, lambda: self._add_event(kind, detail, at)) or 0)

    def _add_event(self, kind: EventKind, detail: str, at: str | None = None) -> int:
        at = at or iso(datetime.now(UTC))
        row = {
            "at": at,  # when it happened, also for an event kept in memory while the card was full
            "severity": kind.severity.value,
            "kind": kind.value,
            "detail": detail,
        }
        with self.db.conn:
            cursor = self.db.conn.execute(
                "INSERT INTO events (at, severity, kind, detail) VALUES (:at, :severity, :kind, :detail)", row
            )
        self.events_version += 1
        return int(cursor.lastrowid or 0)

    # -- the journal of command ids (replay protection) ---------------------------------------------

    def command_seen(self, jti: str) -> bool:
        sql = "SELECT 1 FROM command_journal WHERE jti = ?"
        return self._read(False, lambda: bool(list(self.db.query(sql, [jti]))))

    def remember_command(self, jti: str, expires_at: datetime, keep: timedelta) -> None:
        """Journal ``jti`` until ``keep`` after it expires (longer than any accepted lifetime), and
        forget the ids whose time is up: a replay of those is refused as expired anyway."""
        now = datetime.now(UTC)

        def write() -> None:
            with self.db.conn:
                self.db.conn.execute(
                    "INSERT OR IGNORE INTO command_journal (jti, expires_at, received_at) VALUES (?, ?, ?)",
                    [jti, iso(expires_at + keep), iso(now)],
                )
                self.db.conn.execute("DELETE FROM command_journal WHERE expires_at < ?", [iso(now)])

        self._write(("command_journal", jti), write)

    # -- telemetry -------------------------------------------------------------------------------

    def add_telemetry(self, at: datetime, data: Mapping[str, Any], policy: SpoolPolicy = SPOOL_POLICY) -> int:
        """Append a sample to the outbox and thin the spool by ``policy``; returns its sequence
        number (0 while it is kept in memory)."""
        row = {"at": iso(at), "epoch": int(at.timestamp()), "data": json.dumps(dict(data))}

        def write() -> int:
            with self.db.conn:
                cursor = self.db.conn.execute(
                    "INSERT INTO telemetry (at, epoch, data) VALUES (:at, :epoch, :data)", row
                )
                thin_telemetry(self.db.conn, self._cursor("telemetry"), policy)
            return int(cursor.lastrowid or 0)

        return int(self._write(None, write) or 0)

    def undelivered_telemetry(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """Samples after the delivered cursor (and ``after``), oldest first: seq, at and data."""
        after = max(after, self._cursor("telemetry"))
        sql = "SELECT id AS seq, at, data FROM telemetry WHERE id > ? ORDER BY id LIMIT ?"
        rows = self._read(list[dict[str, Any]](), lambda: list(self.db.query(sql, [after, limit])))
        return [{**row, "data": json.loads(row["data"])} for row in rows]

    # -- the outbox: sent in sequence order from a delivered cursor ----------------------------------

    def undelivered_events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """Events after the delivered cursor (and ``after``), oldest first, each with its ``seq``."""
        after = max(after, self._cursor("events"))
        sql = "SELECT id AS seq, at, severity, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT ?"
        return list(self.db.query(sql, [after, limit]))

    def undelivered_plays(self, limit: int = 100, after: int = 0) -> list[tuple[int, PlayRecord]]:
        """Play-log rows written since the delivered cursor (and ``after``), in ``seq`` order."""
        after = max(after, self._cursor("play_log"))
        rows = self.db.query("SELECT * FROM play_log WHERE seq > ? ORDER BY seq LIMIT ?", [after, limit])
        return [(row["seq"], PlayRecord.from_row(row)) for row in rows]

    def undelivered_counts(self) -> dict[str, int]:
        """How many records each outbox stream holds after its delivered cursor (three COUNTs)."""

        def count(stream: str, table: str, column: str) -> int:
            sql = f"SELECT COUNT(*) FROM {table} WHERE {column} > ?"  # our own names, never input
            return int(self.db.conn.execute(sql, [self._cursor(stream)]).fetchone()[0])

        def each() -> dict[str, int]:
            events, plays = count("events", "events", "id"), count("play_log", "play_log", "seq")
            return {"events": events, "play_log": plays, "telemetry": count("telemetry", "telemetry", "id")}

        return self._read({"events": 0, "play_log": 0, "telemetry": 0}, each)

    def mark_delivered(self, stream: str, seq: int) -> None:
        """The link has delivered ``stream`` (``events``, ``play_log`` or ``telemetry``) up to ``seq``."""
        if stream not in STREAMS:
            raise ValueError(f"unknown outbox stream {stream!r}")
        if seq > self._cursor(stream):
            self.put_state(f"outbox.{stream}", seq)

    def _cursor(self, stream: str) -> int:
        value = self.get_state(f"outbox.{stream}", 0)
        return value if isinstance(value, int) else 0

    def prune(self, now: datetime, retention: Retention = RETENTION) -> dict[str, int]:
        """Apply ``retention``; returns how many rows each table lost (none while the storage
        cannot be written: pruning waits for it)."""
        if self.fault is not None:
            return {"play_log": 0, "events": 0}
        try:
            return self._prune(now, retention)
        except STORAGE_ERRORS as exc:
            self.buffer.fail(exc)
            return {"play_log": 0, "events": 0}

    def _prune(self, now: datetime, retention: Retention) -> dict[str, int]:
        removed = {"play_log": 0, "events": 0}
        plays_before = iso(now - timedelta(days=retention.play_log_days))
        events_before = iso(now - timedelta(days=retention.events_days))
        with self.db.conn:
            conn = self.db.conn
            removed["play_log"] += conn.execute(
                "DELETE FROM play_log WHERE seq <= ? AND scheduled_start < ? AND outcome != 'playing'",
                [self._cursor("play_log"), plays_before],
            ).rowcount
            delivered = f"outcome != 'playing' AND seq <= {self._cursor('play_log'):d}"
            removed["play_log"] += _trim(conn, "play_log", "seq", retention.play_log_max_rows, delivered)
            removed["events"] += conn.execute(
                "DELETE FROM events WHERE id <= ? AND at < ?", [self._cursor("events"), events_before]
            ).rowcount
            for which in ("severity = 'info'", "1"):
                droppable = droppable_events(which)
                removed["events"] += _trim(conn, "events", "id", retention.events_max_rows, droppable)
            removed["telemetry"] = thin_telemetry(conn, self._cursor("telemetry"), whole=True)
        if removed["events"]:
            self.events_version += 1
        return removed

    def recent_events(self, limit: int = 10, severity: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, severity, kind, detail FROM events"
        params: list[Any] = []
        if severity:
            sql += " WHERE severity = ?"
            params.append(severity)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return self._read(list[dict[str, Any]](), lambda: list(self.db.query(sql, params)))

    def events_after(
        self, after: int = 0, since: str | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Events with an id above ``after`` and at or after ``since``, oldest first; only the
        ``last`` ones if given (``loa logs --events``)."""
        sql = "SELECT id, at, severity, kind, detail FROM events WHERE id > ? AND at >= ? ORDER BY id DESC"
        params: list[Any] = [after, since or ""]
        if last is not None:
            sql += " LIMIT ?"
            params.append(last)
        return self._read(list[dict[str, Any]](), lambda: list(self.db.query(sql, params)))[::-1]

    # -- schedule -------------------------------------------------------------------------------

    def replace_schedule(
        self,
        specs: Mapping[str, Mapping[str, Any]],
        source: str,
        *,
        origin: str = LOCAL_ORIGIN,
        version: str = "",
    ) -> None:
        """Replace the last good schedule of ``origin`` in one transaction: all old items or all new."""
        kept = {key: dict(spec) for key, spec in specs.items()}
        self._write(("schedule", origin), lambda: self._replace_schedule(kept, source, origin, version))

    def _replace_schedule(
        self, specs: Mapping[str, Mapping[str, Any]], source: str, origin: str, version: str
    ) -> None:
        now = iso(datetime.now(UTC))
        meta = {"version": version, "source": source, "loaded_at": now, "items": len(specs)}
        with self.db.conn:
            self.db.conn.execute("DELETE FROM schedule_items WHERE origin = ?", [origin])
            self.db.conn.executemany(
                "INSERT INTO schedule_items (id, spec, source, loaded_at, origin) VALUES (?, ?, ?, ?, ?)",
                [
                    (f"{origin}:{i}", json.dumps(s, default=str), source, now, origin)
                    for i, s in specs.items()
                ],
            )
            self.db.conn.execute(
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value, updated_at = excluded.updated_at",
                [f"schedule.{origin}", json.dumps(meta), now],
            )

    def schedule_specs(self, origin: str = LOCAL_ORIGIN) -> Iterator[dict[str, Any]]:
        """The last good schedule of ``origin``, as the specs it was loaded from."""
        sql = "SELECT spec FROM schedule_items WHERE origin = ? ORDER BY id"
        rows = self._read(list[dict[str, Any]](), lambda: list(self.db.query(sql, [origin])))
        for row in rows:
            yield json.loads(row["spec"])

    def schedule_origin(self, origin: str = LOCAL_ORIGIN) -> dict[str, Any]:
        """What is known of ``origin``'s last good schedule: version, source, loaded_at, items."""
        meta = self.get_state(f"schedule.{origin}")
        return meta if isinstance(meta, dict) else {}


def _trim(conn: sqlite3.Connection, table: str, order: str, keep: int, which: str) -> int:
    """Delete the oldest rows matching ``which`` until ``table`` holds at most ``keep`` rows."""
    (count,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    excess = count - keep
    if excess <= 0:
        return 0
    oldest = f"SELECT {order} FROM {table} WHERE {which} ORDER BY {order} LIMIT ?"
    sql = f"DELETE FROM {table} WHERE {order} IN ({oldest})"
    return conn.execute(sql, [excess]).rowcount


def _migrate(db: sqlite_utils.Database) -> None:
    db.conn.executescript(
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
        CREATE TABLE IF NOT EXISTS command_journal (jti TEXT PRIMARY KEY, expires_at TEXT NOT NULL,
            received_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL, epoch INTEGER NOT NULL, data TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS telemetry_epoch ON telemetry (epoch);
        """
    )
    _add_column(db, "play_log", "seq", "INTEGER NOT NULL DEFAULT 0")
    _add_column(db, "play_log", "origin", f"TEXT NOT NULL DEFAULT '{LOCAL_ORIGIN}'")
    _add_column(db, "schedule_items", "origin", f"TEXT NOT NULL DEFAULT '{LOCAL_ORIGIN}'")
    db.conn.executescript(
        """
        CREATE INDEX IF NOT EXISTS play_log_seq ON play_log (seq);
        CREATE INDEX IF NOT EXISTS play_log_outcome ON play_log (outcome);
        """
    )
    version = json.dumps(SCHEMA_VERSION)
    db.conn.execute(
        "INSERT INTO state (key, value, updated_at) VALUES ('schema_version', ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [version, iso(datetime.now(UTC))],
    )
    db.conn.commit()


def _add_column(db: sqlite_utils.Database, table: str, column: str, kind: str) -> None:
    names = {row[1] for row in db.conn.execute(f"PRAGMA table_info({table})")}
    if column not in names:
        db.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _open_writable(path: Path) -> sqlite_utils.Database:
    """The store at ``path`` opened for writing (WAL, synchronous=FULL) and migrated."""
    conn = _connect(path, readonly=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        db = sqlite_utils.Database(conn)
        _migrate(db)
    except BaseException:
        conn.close()
        raise
    return db


def _open_for_reading(path: Path) -> sqlite_utils.Database:
    """What can be read of the store when it cannot be written: the file read-only (``immutable``
    when its WAL files cannot be made on a read-only card), else an empty store in memory."""
    if path.exists():
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=5.0, check_same_thread=False)
                conn.execute("SELECT COUNT(*) FROM state").fetchone()
                conn.execute("SELECT COUNT(*) FROM play_log").fetchone()
                return sqlite_utils.Database(conn)
            except sqlite3.Error:
                continue
    db = sqlite_utils.Database(sqlite3.connect(":memory:", check_same_thread=False))
    _migrate(db)
    return db


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _set_aside(path: Path) -> Path:
    """Move a corrupt store out of the way (kept for inspection) so a new one can start."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(path.with_name(f"{path.name}.corrupt-{stamp}{suffix}"))
    logger.error("store %s is corrupt: set aside as %s.corrupt-%s", path, path.name, stamp)
    return path


def _upsert(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> None:
    """Insert or replace the row with this ``key``.  Plain SQL on purpose: sqlite-utils' upsert
    (INSERT OR IGNORE, then UPDATE) silently writes nothing when the database is full."""
    columns = ", ".join(row)
    updates = ", ".join(f"{column} = excluded.{column}" for column in row if column != "key")
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)}) "
        f"ON CONFLICT(key) DO UPDATE SET {updates}"
    )
    conn.execute(sql, dict(row))


def _read_only_cause(path: Path) -> OSError | None:
    """An EROFS error when the store's file system is mounted read-only (clearer than SQLite's)."""
    try:
        read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return None
    return OSError(errno.EROFS, "read-only file system") if read_only else None
