"""Clears the retained manifest notices of boxes removed from service each time the server's link to
the broker comes up (central.manifests.clear_removed_notices).

``loa-central device remove`` clears a box's notice itself when it reaches the broker; this thread
covers a removal made while the broker was down or ``serve`` was not running, a clearing the
broker did not take, and a notice the embedded broker brought back from its own store after a
crash (it saves that store every minute).  Clearing is idempotent, so doing it at every connection
costs one small message per removed box and nothing else.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from central.context import Publisher
from central.manifests import clear_removed_notices

logger = logging.getLogger(__name__)

IDLE_WAIT = 60.0  # seconds between two looks at the stop flag while no connection comes


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
            except SQLAlchemyError:
                logger.exception("retained notices of removed boxes: the database failed; next connection")
                continue
            if cleared:
                logger.info("cleared the retained manifest notices of %d removed boxes", cleared)
