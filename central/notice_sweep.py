"""Clears what boxes removed from service left retained on the broker each time the server's link to
it comes up: their manifest notices (central.manifests.clear_removed_notices) and the ``status``
and ``state`` each box retained of its own (docs/PROTOCOL.md, "Topics"), so that no subscriber (a
province's own software) goes on seeing a box that is gone.

``loa-central device remove`` clears a box's retained messages itself when it reaches the broker;
this thread covers a removal made while the broker was down or ``serve`` was not running, a
clearing the broker did not take, and a message the embedded broker brought back from its own
store after a crash (it saves that store every minute).  Clearing (an empty retained message on
the topic: how MQTT deletes one) is idempotent, so doing it at every connection costs three small
messages per removed box and nothing else.  The central account may publish there: the embedded
broker's ACL gives it ``loa/#`` (an external broker's must too, docs/CENTRAL.md).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from central import db
from central.context import Publisher
from central.manifests import clear_removed_notices, clear_retained
from protocol.topics import Kind, device_topic

logger = logging.getLogger(__name__)

IDLE_WAIT = 60.0  # seconds between two looks at the stop flag while no connection comes
BOX_RETAINED = (Kind.STATUS, Kind.STATE)  # what a box retains of its own


def own_topics(device_id: str) -> list[str]:
    """The topics a box retains its own messages on: ``status`` (with its last will) and ``state``."""
    return [device_topic(device_id, kind) for kind in BOX_RETAINED]


def removed_boxes(engine: Engine) -> list[str]:
    query = select(db.devices.c.id).where(db.devices.c.removed_at.is_not(None)).order_by(db.devices.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def clear_removed_status(engine: Engine, publisher: Publisher) -> int:
    """Clear the retained ``status`` and ``state`` of every removed box; how many boxes were cleared."""
    removed = removed_boxes(engine)
    if not removed:
        return 0
    topics = {device_id: own_topics(device_id) for device_id in removed}
    return clear_retained(publisher, topics, "retained status and state")


class NoticeSweep:
    """A thread that waits for :meth:`link_up` (the link's ``on_up``, on paho's thread) and sweeps."""

    def __init__(self, engine: Engine, publisher: Publisher) -> None:
        self.engine, self.publisher = engine, publisher
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notice-sweep", daemon=True)

    def link_up(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._wake.wait(IDLE_WAIT) or self._stopping.is_set():
                continue
            self._wake.clear()
            try:
                cleared = clear_removed_notices(self.engine, self.publisher)
                boxes = clear_removed_status(self.engine, self.publisher)
            except SQLAlchemyError:
                logger.exception("retained messages of removed boxes: the database failed; next connection")
                continue
            if cleared:
                logger.info("cleared the retained manifest notices of %d removed boxes", cleared)
            if boxes:
                logger.info("cleared the retained status and state of %d removed boxes", boxes)
