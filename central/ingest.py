"""Ingest: what boxes send over MQTT, into the database, idempotently.

One thread (``ingest``) drains the link's queue.  Each message is decoded strictly by the protocol
package; a bad one is logged and dropped, never stored.  Records (telemetry, events, play log) are
unique by ``(stream, id)``, so one sent twice is stored once; a play-log record replaces the row of
its occurrence (``key``) only when its ``seq`` is higher.  ``status`` follows the protocol's session
rule (a late will of an old session changes nothing), ``state`` and ``telemetry`` are kept as the
box's latest, and every message from a box moves its ``last_seen``: a box silent for longer than
``devices.offline_after`` shows offline (:func:`is_online`) whatever its last status said.

The thread stores what waits in the queue, up to ``BATCH`` messages, in one transaction: one commit
(one fsync) per batch instead of one or two per message, which is what lets one SQLite file keep
up with a thousand boxes (docs/BENCHMARKS.md).  A batch whose transaction fails is stored again
message by message, so a row the database refuses loses only its own message.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Update, bindparam, select, update

from central import commands, db
from central.mqtt_link import Incoming
from protocol.json_wire import ProtocolError
from protocol.messages import (
    Record,
    StatusMessage,
    decode_ack,
    decode_record,
    decode_state,
    decode_status,
    status_applies,
)
from protocol.topics import Kind, parse_topic

logger = logging.getLogger(__name__)

RECORD_STREAMS = (Kind.TELEMETRY, Kind.EVENTS, Kind.PLAYLOG)
BATCH = 500  # messages stored in one transaction at most


def is_online(online: bool, last_seen: datetime | None, now: datetime, offline_after: timedelta) -> bool:
    return online and last_seen is not None and now - last_seen <= offline_after


# A box's verified cache holds central audio at storage.dir/audio/<sha256> (agent.audio_cache)
_CACHED = re.compile(r"(?:^|.*/)audio/([0-9a-fA-F]{64})|([0-9a-fA-F]{64})")


def audio_of(value: str) -> str:
    """A play log's ``audio`` as the central shows and reports it: the sha256 of audio from the
    box's verified cache (a box names a central command's audio by its cached file,
    ``/var/lib/loa/audio/<sha256>``), else what the box said (a file of its own local schedule)."""
    found = _CACHED.fullmatch(value)
    return value if found is None else (found.group(1) or found.group(2)).lower()


class Ingestor:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine, self.clock = engine, clock
        self.known: set[str] = set()
        self.stored = 0  # messages taken into the store, for tests and benchmarks
        self.dropped = 0
        # what a batch changes in each box's row (last seen, telemetry, state), written once at its end
        self._pending: dict[str, dict[str, Any]] = {}
        self._insert_record = db.insert_ignoring_duplicates(
            engine, db.records, ["stream", "record_id"]
        ).returning(db.records.c.seq_id)

    def handle(self, message: Incoming) -> bool:
        """Store one message; False if it was dropped (unknown box, bad payload, unknown topic)."""
        return self.handle_batch([message]) == 1

    def handle_batch(self, messages: list[Incoming]) -> int:
        """Store ``messages`` in one transaction, in order; how many were stored (the rest dropped).

        If the batch fails, each message is stored again in a transaction of its own, so that a row the
        database refuses (or a message that hits a bug) loses only itself."""
        self._pending.clear()
        try:
            with self.engine.begin() as conn:
                results = [self._handle(conn, message) for message in messages]
                self._write_seen(conn)
        except Exception:  # the database refused a row, or a message hit a bug: find which one
            if len(messages) == 1:
                raise
            logger.warning("a batch of %d messages failed: storing them one by one", len(messages))
            return sum(self._handle_alone(message) for message in messages)
        stored = sum(results)
        self.stored += stored
        self.dropped += len(results) - stored
        return stored

    def _handle_alone(self, message: Incoming) -> bool:
        try:
            return self.handle(message)
        except Exception:  # this one failed: log it, keep the others
            logger.exception("ingest of a message on %s failed", message.topic)
            return False

    def _handle(self, conn: Connection, message: Incoming) -> bool:
        try:
            topic = parse_topic(message.topic)
            device = topic.device_id
            if device is None or not self._registered(conn, device):
                raise ProtocolError("topic", [f"{message.topic}: not a registered box's topic"])
            self._store(conn, topic.kind, device, message.payload)
        except ProtocolError as error:  # raised before the message wrote anything
            logger.warning(
                "dropped a message on %s: %s", message.topic, "; ".join(map(str, error.problems))[:300]
            )
            return False
        return True

    def _registered(self, conn: Connection, device: str) -> bool:
        if device not in self.known:
            if conn.execute(select(db.devices.c.id).where(db.devices.c.id == device)).first() is None:
                return False
            self.known.add(device)
        return True

    def _store(self, conn: Connection, kind: Kind, device: str, payload: bytes) -> None:
        now = self.clock()
        if kind == Kind.STATUS:
            self._status(conn, device, decode_status(payload), now)
        elif kind == Kind.STATE:
            state = decode_state(payload)
            raw = json.loads(payload)
            self._seen(device, now, state=raw, state_at=state.at)
        elif kind == Kind.ACK:
            if not commands.record_ack(conn, device, decode_ack(payload)):
                logger.info("ack from %s for a command it was not sent", device)
            self._seen(device, now)
        elif kind in RECORD_STREAMS:
            self._record(conn, decode_record(kind, payload, device), now)
        else:
            raise ProtocolError("topic", [f"boxes do not send {kind.value}"])

    def _seen(self, device: str, now: datetime, **values: Any) -> None:
        self._pending.setdefault(device, {}).update(last_seen=now, **values)

    def _write_seen(self, conn: Connection) -> None:
        """One UPDATE per set of columns for every box of the batch (executemany), not one per message."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for device, values in self._pending.items():
            row = {"device_": device} | {f"v_{name}": value for name, value in values.items()}
            by_columns.setdefault(tuple(sorted(values)), []).append(row)
        for columns, rows in by_columns.items():
            conn.execute(_seen_statement(columns), rows)
        self._pending.clear()

    def _status(self, conn: Connection, device: str, status: StatusMessage, now: datetime) -> None:
        row = conn.execute(
            select(db.devices.c.online, db.devices.c.session).where(db.devices.c.id == device)
        ).one()
        current = None if row.session is None else StatusMessage(row.online, row.session, status.at)
        if not status_applies(current, status):
            logger.info(
                "%s: offline of session %d ignored (session %s holds)", device, status.session, row.session
            )
            return
        values = {"online": status.online, "session": status.session}
        conn.execute(update(db.devices).where(db.devices.c.id == device).values(**values))
        if status.online:
            self._seen(device, now)

    def _record(self, conn: Connection, record: Record, now: datetime) -> None:
        row = {"stream": record.stream.value, "record_id": record.id, "device_id": record.device_id,
               "seq": record.seq, "at": record.at, "data": dict(record.data), "received_at": now}  # fmt: skip
        new = conn.execute(self._insert_record, row).first() is not None
        if record.stream == Kind.TELEMETRY and new:
            self._seen(record.device_id, now, telemetry=dict(record.data), telemetry_at=record.at)
        else:
            self._seen(record.device_id, now)
        if record.stream == Kind.PLAYLOG and new:
            self._playlog(conn, record)

    def _playlog(self, conn: Any, record: Record) -> None:
        data = record.data
        row = {
            "device_id": record.device_id,
            "key": data["key"],
            "seq": record.seq,
            "item_id": data["item_id"],
            "audio": audio_of(data["audio"]),
            "level": data["level"],
            "zones": list(data["zones"]),
            "scheduled_start": _time(data["scheduled_start"]),
            "actual_start": _time(data["actual_start"]),
            "ended": _time(data["ended"]),
            "outcome": data["outcome"],
            "reason": data["reason"],
            "origin": data["origin"],
        }
        columns = [name for name in row if name not in ("device_id", "key")]
        # the later record of an occurrence wins, whatever order they arrive in
        conn.execute(
            db.upsert(self.engine, db.playlogs, ["device_id", "key"], columns, only_if_greater="seq"), row
        )


@functools.cache
def _seen_statement(columns: tuple[str, ...]) -> Update:
    return (
        update(db.devices)
        .where(db.devices.c.id == bindparam("device_"))
        .values({name: bindparam(f"v_{name}", type_=db.devices.c[name].type) for name in columns})
    )


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class IngestThread:
    """Drains the link's queue into the store until stopped."""

    def __init__(self, ingestor: Ingestor, inbox: queue.Queue[Incoming]) -> None:
        self.ingestor, self.inbox = ingestor, inbox
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ingest", daemon=True)

    def start(self) -> None:
        self.thread.start()
        logger.info("ingest started")

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = [self.inbox.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < BATCH:  # what else waits goes into the same transaction
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self.ingestor.handle_batch(batch)
            except Exception:  # a database failure must not stop ingest: log it, take the next
                logger.exception("ingest of %d messages (the first on %s) failed", len(batch), batch[0].topic)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        logger.info("ingest stopped")
