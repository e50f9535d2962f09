"""Writes the store cannot take now, kept in memory until it can.

An SD card that went read-only after a power cut, or a full one, must not silence the box.  Every
write of :class:`agent.store.Store` goes through :class:`WriteBuffer`: when SQLite or the file
system refuses it, the write is kept here (in order, coalesced by key so that the latest state of
a play-log row or a state value replaces an earlier one), the store reports a storage fault, and
the main loop retries now and then.  Once the store takes writes again, the kept ones are written
in order and the fault clears.  Memory is bounded: past ``limit`` kept writes the oldest are
dropped, and counted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

logger = logging.getLogger(__name__)

STORAGE_ERRORS = (sqlite3.Error, OSError)
RETRY_EVERY = 5.0  # seconds between attempts to write what is kept
DEFAULT_LIMIT = 20_000

Write = Callable[[], Any]


class WriteBuffer:
    def __init__(self, limit: int = DEFAULT_LIMIT, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._kept: OrderedDict[Hashable, Write] = OrderedDict()
        self._serial = 0
        self._last_try = 0.0
        self.fault: str | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._kept)

    def write(self, key: Hashable | None, action: Write) -> Any:
        """Run ``action`` now, or keep it if the store refuses it (or older writes still wait)."""
        if not self._kept:
            try:
                return action()
            except STORAGE_ERRORS as exc:
                self.fail(exc)
        self._keep(key, action)
        return None

    def retry(self, reopen: Callable[[], None] | None = None) -> bool:
        """Write what is kept, at most every ``RETRY_EVERY`` seconds; True once all is written."""
        if self.fault is None and not self._kept:
            return True
        now = self._clock()
        if now - self._last_try < RETRY_EVERY:
            return False
        self._last_try = now
        try:
            if reopen is not None:
                reopen()
            while self._kept:
                key, action = next(iter(self._kept.items()))
                action()
                del self._kept[key]
        except STORAGE_ERRORS as exc:
            self.fail(exc)
            return False
        logger.warning("storage writable again: the kept records are written (%d dropped)", self.dropped)
        self.fault = None
        return True

    def _keep(self, key: Hashable | None, action: Write) -> None:
        if key is None:
            self._serial += 1
            key = ("write", self._serial)
        self._kept.pop(key, None)
        self._kept[key] = action
        while len(self._kept) > self._limit:
            self._kept.popitem(last=False)
            self.dropped += 1

    def fail(self, exc: BaseException) -> None:
        """The store refused a write (or cannot be opened for writing): say why, once."""
        words = describe(exc)
        if self.fault != words:
            logger.error("storage fault: %s; keeping records in memory until it can be written", words)
        self.fault = words
        self._last_try = self._clock()


def describe(exc: BaseException) -> str:
    """A storage error in a crew's words."""
    text = str(exc)
    if "full" in text or getattr(exc, "errno", None) == 28:
        return "the storage is full"
    if "readonly" in text or "read-only" in text or getattr(exc, "errno", None) == 30:
        return "the storage is read-only (an SD card fault after a power cut?)"
    return f"the store cannot be written: {text}"
