"""Ingest: what boxes send over MQTT, into the database, idempotently.

One thread (``ingest``) drains the link's queue.  Each message is decoded strictly by the protocol
package; a bad one is logged and dropped, never stored.  Records (telemetry, events, play log) are
unique by ``(stream, id)``, so one sent twice is stored once; a play-log record replaces the row of
its occurrence (``key``) only when its ``seq`` is higher.  ``status`` follows the protocol's session
rule (a late will of an old session changes nothing), ``state`` and ``telemetry`` are kept as the
box's latest, and every message from a box moves its ``last_seen``: a box silent for longer than
``devices.offline_after`` shows offline (:func:`is_online`) whatever its last status said.  What a
box removed from service (``loa-central device remove``) still sends is dropped, with a warning.

The thread stores what waits in the queue, up to ``BATCH`` messages, in one transaction: one commit
(one fsync) per batch instead of one or two per message, which is what lets one SQLite file keep
up with a thousand boxes (docs/BENCHMARKS.md).  A batch whose transaction fails is stored again
message by message, so a row the database refuses loses only its own message.

Nothing is lost to a crash or to a database that fails for a while: a message is acknowledged to
the broker (``done``, central.mqtt_link) only once it is stored or dropped on purpose.  One that
could not be stored is kept and tried again: at once when others were stored beside it, after a
growing pause (up to ``MAX_PAUSE``) when none could be (the database is away, or full).  Only a
message the database refused ``STRIKES`` times while it took others is dropped, with an error in
the log: that is the database refusing that row, not the database being away.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Sequence
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
STRIKES = 3  # times the database refuses a message while storing others before it is dropped
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0  # seconds between tries while the database stores nothing


class Outcome(enum.Enum):
    STORED = "stored"
    DROPPED = "dropped"  # not a registered box's valid message: logged, never stored
    FAILED = "failed"  # the database did not take it (now): to be tried again


def is_online(online: bool, last_seen: datetime | None, now: datetime, offline_after: timedelta) -> bool:
    return online and last_seen is not None and now - last_seen <= offline_after


def service_status(row: Any, now: datetime, offline_after: timedelta) -> str:
    """A ``devices`` row's ``removed`` (from service), ``online`` or ``offline`` (whatever it said
    once it is silent too long): what the pages, the API and ``device list`` show."""
    if row.removed_at is not None:
        return "removed"
    return "online" if is_online(row.online, row.last_seen, now, offline_after) else "offline"


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
        # the batch's boxes, registered ones only: when each was removed from service (None: in service)
        self._boxes: dict[str, datetime | None] = {}
        self.stored = 0  # messages taken into the store, for tests and benchmarks
        self.dropped = 0
        self.failed = 0  # tries the database did not take (a message may fail more than once)
        # what a batch changes in each box's row (last seen, telemetry, state), written once at its end
        self._pending: dict[str, dict[str, Any]] = {}
        self._insert_record = db.insert_ignoring_duplicates(
            engine, db.records, ["stream", "record_id"]
        ).returning(db.records.c.seq_id)

    def handle(self, message: Incoming) -> bool:
        """Store one message; False if it was dropped (unknown box, bad payload, unknown topic) or
        the database did not take it."""
        return self.handle_batch([message]) == 1

    def handle_batch(self, messages: list[Incoming]) -> int:
        """Store ``messages`` (see :meth:`ingest`); how many were stored."""
        return sum(outcome is Outcome.STORED for outcome in self.ingest(messages))

    def ingest(self, messages: Sequence[Incoming]) -> list[Outcome]:
        """Store ``messages`` in one transaction, in order; what became of each.

        If the batch fails, each message is stored again in a transaction of its own, so that a row the
        database refuses (or a message that hits a bug) fails alone."""
        self._pending.clear()
        try:
            with self.engine.begin() as conn:
                self._boxes = self._boxes_of(conn, messages)
                outcomes = [self._handle(conn, message) for message in messages]
                self._write_seen(conn)
        except Exception:  # the database refused a row, or a message hit a bug: find which one
            if len(messages) == 1:
                logger.exception("ingest of a message on %s failed", messages[0].topic)
                self.failed += 1
                return [Outcome.FAILED]
            logger.warning("a batch of %d messages failed: storing them one by one", len(messages))
            return [self.ingest([message])[0] for message in messages]
        self.stored += outcomes.count(Outcome.STORED)
        self.dropped += outcomes.count(Outcome.DROPPED)
        return outcomes

    def _handle(self, conn: Connection, message: Incoming) -> Outcome:
        try:
            topic = parse_topic(message.topic)
            device = topic.device_id
            if device is None or device not in self._boxes:
                raise ProtocolError("topic", [f"{message.topic}: not a registered box's topic"])
            removed = self._boxes[device]
            if removed is not None:
                if not message.payload:  # the server clearing what it retained (central.notice_sweep)
                    return Outcome.DROPPED
                raise ProtocolError("topic", [f"box {device} was removed from service on {removed:%Y-%m-%d}"])
            self._store(conn, topic.kind, device, message.payload)
        except ProtocolError as error:  # raised before the message wrote anything
            logger.warning(
                "dropped a message on %s: %s", message.topic, "; ".join(map(str, error.problems))[:300]
            )
            return Outcome.DROPPED
        return Outcome.STORED

    @staticmethod
    def _boxes_of(conn: Connection, messages: Sequence[Incoming]) -> dict[str, datetime | None]:
        """The registered boxes among the senders of ``messages``, each with when it was removed from
        service: one query per batch, so a box removed while the server runs is dropped from the next."""
        senders = set()
        for message in messages:
            try:
                senders.add(parse_topic(message.topic).device_id)
            except ProtocolError:
                continue  # _handle drops it, with the reason
        senders.discard(None)
        if not senders:
            return {}
        query = select(db.devices.c.id, db.devices.c.removed_at).where(db.devices.c.id.in_(senders))
        return {row.id: row.removed_at for row in conn.execute(query)}

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
    """Drains the link's queue into the store until stopped; acknowledges (``done``) each message
    once it is stored or dropped on purpose, and tries again those the database did not take."""

    def __init__(
        self,
        ingestor: Ingestor,
        inbox: queue.Queue[Incoming],
        done: Callable[[Sequence[Incoming]], object] = lambda _messages: None,
    ) -> None:
        self.ingestor, self.inbox, self.done = ingestor, inbox, done
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._again: list[tuple[Incoming, int]] = []  # not stored yet, with their strikes
        self._pause = FIRST_PAUSE

    def start(self) -> None:
        self.thread.start()
        logger.info("ingest started")

    def _run(self) -> None:
        while not self.stopping.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                outcomes = self.ingestor.ingest([message for message, _ in batch])
            except Exception:  # a bug outside the database's work: nothing was stored, try again
                logger.exception("ingest of %d messages failed", len(batch))
                outcomes = [Outcome.FAILED] * len(batch)
            self._settle(batch, outcomes)

    def _next_batch(self) -> list[tuple[Incoming, int]]:
        batch, self._again = self._again, []
        if not batch:
            try:
                batch.append((self.inbox.get(timeout=0.5), 0))
            except queue.Empty:
                return []
        while len(batch) < BATCH:  # what else waits goes into the same transaction
            try:
                batch.append((self.inbox.get_nowait(), 0))
            except queue.Empty:
                break
        return batch

    def _settle(self, batch: list[tuple[Incoming, int]], outcomes: list[Outcome]) -> None:
        finished = [message for (message, _), outcome in zip(batch, outcomes, strict=True)
                    if outcome is not Outcome.FAILED]  # fmt: skip
        failed = [entry for entry, outcome in zip(batch, outcomes, strict=True) if outcome is Outcome.FAILED]
        stored_some = Outcome.STORED in outcomes
        for message, strikes in failed:
            strikes += stored_some  # refused while the database took others: a strike against it
            if strikes >= STRIKES:
                logger.error("the database refused a message on %s %d times: dropped", message.topic, strikes)
                self.ingestor.dropped += 1
                finished.append(message)
            else:
                self._again.append((message, strikes))
        if finished:
            self.done(finished)
        if failed and not stored_some:  # the database is away or full: wait before the next try
            logger.warning("the database took none of %d messages: next try in %g s", len(batch), self._pause)
            self.stopping.wait(self._pause)
            self._pause = min(self._pause * 2, MAX_PAUSE)
        else:
            self._pause = FIRST_PAUSE

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        logger.info("ingest stopped (%d messages left to the broker to send again)", len(self._again))
