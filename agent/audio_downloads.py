"""The ``central-audio`` thread: the audio that the central schedule needs, downloaded ahead.

Each round (every ``REPLAN_EVERY`` seconds, or at once when woken: a new manifest, ``sync_now``,
an item found without its audio at its start) it takes each central item's next start within the
horizon (7 days), checks which of their files the verified cache holds (agent.audio_cache: hashed
when new to this process or changed, else a stat), warns once per occurrence whose audio is still
missing ``LATE_WARNING`` before its start, keeps the quota (never evicting what the horizon
needs) and downloads what is missing, nearest start first.  A failed download is tried again
after 30 s, doubling to 30 min.  The store belongs to the main loop, so events go through
``post`` as :class:`SyncNote`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.audio_cache import DEFAULT_HORIZON, AudioCache
from agent.events import EventKind
from agent.store import iso
from foundation.units import format_duration
from scheduler.items import Item
from scheduler.recurrence import item_starts

logger = logging.getLogger(__name__)

LATE_WARNING = timedelta(minutes=30)  # an item's audio still missing this long before its start
REPLAN_EVERY = 60.0  # seconds between rounds when nothing wakes the thread
PLAYING_MARGIN = timedelta(hours=1)  # an occurrence started this recently may still be playing
AUDIO_TIMEOUT = 30.0  # seconds, for a connection and between bytes of one download
RETRY_FIRST, RETRY_MAX = 30.0, 1800.0  # seconds before a failed download is tried again, doubling


@dataclass(frozen=True)
class SyncNote:
    """An event for the store, from a thread that may not write it."""

    kind: EventKind
    detail: str


@dataclass(frozen=True)
class _Needed:
    item_id: str
    sha256: str
    url: str | None
    start: datetime


class AudioDownloads:
    """The ``central-audio`` thread over ``cache``; ``items`` and ``urls`` give the central items
    and the URL of each audio (both replaced whole by the main loop, read here)."""

    def __init__(
        self,
        cache: AudioCache,
        tz: ZoneInfo,
        items: Callable[[], list[Item]],
        urls: Callable[[], Mapping[str, str]],
        post: Callable[[object], None],
        wall: Callable[[], datetime],
    ) -> None:
        self.cache, self.tz = cache, tz
        self._items, self._urls, self._post, self._wall = items, urls, post, wall
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="central-audio", daemon=True)
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._retry_at: dict[str, tuple[float, float]] = {}  # sha256 -> (monotonic due, delay)
        self._warned_late: set[str] = set()
        self._corrupt_seen = 0
        self._starts_of: list[Item] | None = None  # the items whose next starts _starts holds
        self._starts: dict[Item, tuple[datetime | None, datetime]] = {}  # item -> (next start, valid until)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: float) -> bool:
        """Stop; whether the thread ended within ``wait`` seconds (a download is not waited for)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=wait)
        return not self._thread.is_alive()

    def wake(self) -> None:
        """Plan again now (any thread)."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._round()
            except Exception:  # a bug here must not end the thread that keeps the audio coming
                logger.exception("audio download round failed")
            self._wake.wait(REPLAN_EVERY)

    def _needed(self, now: datetime) -> list[_Needed]:
        """The central occurrences that may play from now to the horizon: item, audio, next start.

        Each item's next start is kept until it has passed (or, for an item with none within the
        horizon, for an hour), also across manifests that keep the item as it was: a round costs a
        lookup per item, and the rules of only the new or changed items are expanded.
        """
        items, urls = self._items(), self._urls()
        if items is not self._starts_of:  # a new manifest: forget the items it no longer has
            self._starts_of = items
            self._starts = {item: self._starts[item] for item in items if item in self._starts}
        needed = []
        for item in list(items):
            start, valid_until = self._starts.get(item, (None, now))
            if now >= valid_until:
                start = self._next_start(item, now)
                valid_until = start + PLAYING_MARGIN if start else now + timedelta(hours=1)
                self._starts[item] = (start, valid_until)
            if start is not None:
                needed.append(_Needed(item.id, item.audio, urls.get(item.audio), start))
        return needed

    def _next_start(self, item: Item, now: datetime) -> datetime | None:
        tz = self.tz
        soon, horizon = now + timedelta(days=1), now + DEFAULT_HORIZON
        # the next day first: most items start within it, and a short window is far cheaper
        starts = item_starts(item, tz, now - PLAYING_MARGIN, soon) or item_starts(item, tz, soon, horizon)
        return starts[0] if starts else None

    def _round(self) -> None:
        now = self._wall()
        needed = self._needed(now)
        ready = {sha for sha in {n.sha256 for n in needed} if self.cache.ready(sha)}
        self._report_corrupt()
        self._warn_late(needed, ready, now)
        wanted = [(n.sha256, n.url, max(n.start, now)) for n in needed if n.url is not None]
        plan = self.cache.plan(wanted, now)
        needed_hashes = self.cache.needed()
        self.cache.evict(needed_hashes)
        self._publish(needed, ready, now)
        for download in plan:
            if self._stop.is_set() or self._wake.is_set():
                return  # a new manifest or a stop: plan again first
            if not self._due(download.sha256):
                continue
            if self._download(download.sha256, download.url):
                ready.add(download.sha256)
            self.cache.evict(needed_hashes)
            self._publish(needed, ready, now)

    def _download(self, sha256: str, url: str) -> bool:
        with self._lock:
            self._status = {**self._status, "downloading": sha256}
        try:
            self.cache.fetch(sha256, url, timeout=AUDIO_TIMEOUT)
        except OSError as error:  # a CacheError, or the card refusing the write (full, read-only)
            _due, delay = self._retry_at.get(sha256, (0.0, 0.0))
            delay = min(RETRY_MAX, delay * 2 or RETRY_FIRST)
            self._retry_at[sha256] = (time.monotonic() + delay, delay)
            logger.warning("%s; trying again in %s", error, format_duration(timedelta(seconds=delay)))
            if delay == RETRY_FIRST:  # once per file until it succeeds
                self._post(SyncNote(EventKind.AUDIO_DOWNLOAD_FAILED, str(error)))
            return False
        finally:
            with self._lock:
                self._status = {**self._status, "downloading": None}
        self._retry_at.pop(sha256, None)
        return True

    def _due(self, sha256: str) -> bool:
        retry = self._retry_at.get(sha256)
        return retry is None or time.monotonic() >= retry[0]

    def _warn_late(self, needed: list[_Needed], ready: set[str], now: datetime) -> None:
        for entry in needed:
            key = f"{entry.item_id}@{entry.start.isoformat()}"
            if entry.sha256 in ready or not now <= entry.start <= now + LATE_WARNING:
                continue
            if key in self._warned_late:
                continue
            self._warned_late.add(key)
            local = entry.start.astimezone(self.tz)
            why = "no URL for it in the manifest" if entry.url is None else "not downloaded yet"
            detail = f"{entry.item_id} at {local:%Y-%m-%d %H:%M:%S}: audio {entry.sha256} {why}"
            logger.warning("audio late: %s", detail)
            self._post(SyncNote(EventKind.AUDIO_LATE, detail))
        if len(self._warned_late) > 10_000:  # keys of long past starts
            self._warned_late.clear()

    def _report_corrupt(self) -> None:
        corrupt = self.cache.corrupt_deleted
        if corrupt > self._corrupt_seen:
            detail = (
                f"{corrupt - self._corrupt_seen} cached audio file(s) did not match their sha256: deleted"
            )
            self._post(SyncNote(EventKind.AUDIO_CORRUPT, detail + ", to be fetched again"))
        self._corrupt_seen = corrupt

    def _publish(self, needed: list[_Needed], ready: set[str], now: datetime) -> None:
        disk = self.cache.status()
        missing = sorted({n.item_id for n in needed if n.sha256 not in ready})
        with self._lock:
            self._status = {
                **self._status,
                "planned_at": iso(now),
                "horizon": format_duration(DEFAULT_HORIZON),
                "items": len({n.item_id for n in needed}),
                "ready": len({n.item_id for n in needed}) - len(missing),
                "missing": len(missing),
                "missing_items": missing[:5],
                "bytes": disk["bytes"],
                "quota": disk["quota"],
                "files": disk["files"],
                "partials": disk["partials"],
                "corrupt_deleted": disk["corrupt_deleted"],
            }
