"""Ingest: what boxes send over MQTT, into the database, idempotently.

One thread (``ingest``) drains the link's queue.  Each message is decoded strictly by the protocol
package; a bad one is logged and dropped, never stored.  Records (telemetry, events, play log) are
unique by ``(stream, id)``, so one sent twice is stored once; a play-log record replaces the row of
its occurrence (``key``) only when its ``seq`` is higher.  ``status`` follows the protocol's session
rule (a late will of an old session changes nothing), ``state`` and ``telemetry`` are kept as the
box's latest, and every message from a box moves its ``last_seen``: a box silent for longer than
``devices.offline_after`` shows offline (:func:`is_online`) whatever its last status said.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

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

    def handle(self, message: Incoming) -> bool:
        """Store one message; False if it was dropped (unknown box, bad payload, unknown topic)."""
        try:
            topic = parse_topic(message.topic)
            device = topic.device_id
            if device is None or not self._registered(device):
                raise ProtocolError("topic", [f"{message.topic}: not a registered box's topic"])
            self._store(topic.kind, device, message.payload)
        except ProtocolError as error:
            self.dropped += 1
            logger.warning(
                "dropped a message on %s: %s", message.topic, "; ".join(map(str, error.problems))[:300]
            )
            return False
        self.stored += 1
        return True

    def _registered(self, device: str) -> bool:
        if device not in self.known:
            with self.engine.connect() as conn:
                if conn.execute(select(db.devices.c.id).where(db.devices.c.id == device)).first() is None:
                    return False
            self.known.add(device)
        return True

    def _store(self, kind: Kind, device: str, payload: bytes) -> None:
        now = self.clock()
        if kind == Kind.STATUS:
            self._status(device, decode_status(payload), now)
        elif kind == Kind.STATE:
            state = decode_state(payload)
            raw = json.loads(payload)
            self._seen(device, now, state=raw, state_at=state.at)
        elif kind == Kind.ACK:
            if not commands.record_ack(self.engine, device, decode_ack(payload)):
                logger.info("ack from %s for a command it was not sent", device)
            self._seen(device, now)
        elif kind in RECORD_STREAMS:
            self._record(decode_record(kind, payload, device), now)
        else:
            raise ProtocolError("topic", [f"boxes do not send {kind.value}"])

    def _seen(self, device: str, now: datetime, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(db.devices).where(db.devices.c.id == device).values(last_seen=now, **values))

    def _status(self, device: str, status: StatusMessage, now: datetime) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.devices.c.online, db.devices.c.session).where(db.devices.c.id == device)
            ).one()
            current = None if row.session is None else StatusMessage(row.online, row.session, status.at)
            if not status_applies(current, status):
                logger.info(
                    "%s: offline of session %d ignored (session %s holds)",
                    device,
                    status.session,
                    row.session,
                )
                return
            values: dict[str, Any] = {"online": status.online, "session": status.session}
            if status.online:
                values["last_seen"] = now
            conn.execute(update(db.devices).where(db.devices.c.id == device).values(**values))

    def _record(self, record: Record, now: datetime) -> None:
        row = {"stream": record.stream.value, "record_id": record.id, "device_id": record.device_id,
               "seq": record.seq, "at": record.at, "data": dict(record.data), "received_at": now}  # fmt: skip
        statement = db.insert_ignoring_duplicates(self.engine, db.records, ["stream", "record_id"])
        with self.engine.begin() as conn:
            new = conn.execute(statement.returning(db.records.c.seq_id), row).first() is not None
            values: dict[str, Any] = {"last_seen": now}
            if record.stream == Kind.TELEMETRY and new:
                values |= {"telemetry": dict(record.data), "telemetry_at": record.at}
            conn.execute(update(db.devices).where(db.devices.c.id == record.device_id).values(**values))
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
                message = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.ingestor.handle(message)
            except Exception:  # a database failure must not stop ingest: log it, take the next
                logger.exception("ingest of a message on %s failed", message.topic)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        logger.info("ingest stopped")
