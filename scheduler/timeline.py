"""The occurrences of a fixed schedule, expanded a chunk of time at a time and kept.

The engine asks on every pass of the agent's loop (at least once a second) what is due, which
relays the next seconds need and when to wake next, and the status board asks what comes next.
Answering each question by expanding every item cost a third of a core with 10,000 items
(issue 7). Here time is cut into chunks (12 hours, aligned to multiples of the chunk since the Unix
epoch); each chunk is expanded once, when first needed or ahead of time (:meth:`Timeline.prefetch`),
and the few around the frontier are kept. The two questions that look further ahead, the first
start after an instant and the first few occurrences from an instant, keep their answer for as
long as a later instant cannot change it. Every answer equals what :func:`expand` and
:func:`first_start` give (tests/test_scheduler_properties.py checks that).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from scheduler.items import Item
from scheduler.recurrence import SEARCH_HORIZON, Occurrence, expand, first_start

TICK = timedelta(microseconds=1)  # the resolution of datetime
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# soonest() looks one day ahead through the chunks, then further with expand(): more than a day
# ahead is asked only of sparse schedules, and rarely (the answer is kept).
_NEAR = timedelta(days=1)
_FAR_STAGE = timedelta(days=8)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """The occurrences starting in one chunk of time, sorted, with their starts for bisection."""

    starts: list[datetime]
    occurrences: list[Occurrence]

    def slice(self, start: datetime, end: datetime) -> list[Occurrence]:
        return self.occurrences[bisect_left(self.starts, start) : bisect_left(self.starts, end)]


@dataclass(frozen=True, slots=True)
class _Kept(Generic[T]):
    """An answer that holds for every instant from ``since`` to ``through`` (both included)."""

    since: datetime
    through: datetime
    value: T

    def holds(self, moment: datetime) -> bool:
        return self.since <= moment <= self.through


class Timeline:
    """Occurrences of a fixed item list; at most ``keep`` expanded chunks are kept."""

    def __init__(
        self, items: Iterable[Item], tz: ZoneInfo, chunk: timedelta = timedelta(hours=12), keep: int = 4
    ) -> None:
        self.items = tuple(items)
        self.tz = tz
        self._chunk = chunk
        self._keep = keep
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()  # least recently used first
        self._after: _Kept[datetime | None] | None = None
        self._soonest: tuple[int, timedelta, _Kept[tuple[Occurrence, ...]]] | None = None

    def between(self, start: datetime, end: datetime) -> list[Occurrence]:
        """Occurrences starting in ``[start, end)``, sorted by start then priority."""
        if start >= end:
            return []
        first, last = self._index(start), self._index(end - TICK)
        if last - first >= self._keep:  # a long span: expanded once, not kept
            return expand(self.items, self.tz, start, end)
        found: list[Occurrence] = []
        for index in range(first, last + 1):
            found += self._load(index).slice(start, end)
        return found

    def first_after(self, after: datetime) -> datetime | None:
        """The earliest start strictly after ``after``, as :func:`first_start` finds it."""
        kept = self._after
        if kept is None or not kept.holds(after):
            kept = self._after = self._first_after(after)
        return kept.value

    def soonest(self, start: datetime, limit: int, within: timedelta) -> tuple[Occurrence, ...]:
        """The first ``limit`` occurrences starting in ``[start, start + within)``, in order."""
        if limit <= 0:
            return ()
        kept = self._soonest
        if kept is None or kept[:2] != (limit, within) or not kept[2].holds(start):
            kept = self._soonest = (limit, within, self._find_soonest(start, limit, within))
        return kept[2].value

    def prefetch(self, moment: datetime) -> None:
        """Expand the chunk after the one holding ``moment`` now, while there is time, rather than
        when the frontier crosses into it (10,000 daily rules take about 0.4 s here, 1.5 s on a
        Raspberry Pi 4: a start due just then would be late)."""
        self._load(self._index(moment) + 1)

    # -- internals -------------------------------------------------------------------------------

    def _index(self, moment: datetime) -> int:
        return (moment - _EPOCH) // self._chunk

    def _load(self, index: int) -> _Chunk:
        chunk = self._chunks.get(index)
        if chunk is not None:
            self._chunks.move_to_end(index)
            return chunk
        lo = _EPOCH + index * self._chunk
        found = expand(self.items, self.tz, lo, lo + self._chunk)
        chunk = self._chunks[index] = _Chunk([occ.start for occ in found], found)
        while len(self._chunks) > self._keep:
            self._chunks.popitem(last=False)
        return chunk

    def _walk(self, start: datetime, end: datetime) -> Iterator[Occurrence]:
        """Occurrences in ``[start, end)`` (at most ``keep`` chunks), loading chunks only as needed."""
        for index in range(self._index(start), self._index(end - TICK) + 1):
            yield from self._load(index).slice(start, end)

    def _first_after(self, after: datetime) -> _Kept[datetime | None]:
        near = next(self._walk(after + TICK, after + self._chunk), None)
        found = near.start if near is not None else first_start(self.items, self.tz, after)
        if found is not None:  # nothing starts between after and found
            return _Kept(after, found - TICK, found)
        # Nothing in [after + TICK, after + TICK + SEARCH_HORIZON): the answer stays None until the
        # searched span, moving with the instant asked about, reaches the next start beyond it.
        later = first_start(self.items, self.tz, after + SEARCH_HORIZON)
        through = later - SEARCH_HORIZON - TICK if later is not None else after + SEARCH_HORIZON
        return _Kept(after, through, None)

    def _find_soonest(self, start: datetime, limit: int, within: timedelta) -> _Kept[tuple[Occurrence, ...]]:
        end = start + within
        found: list[Occurrence] = []
        near = min(start + min(_NEAR, (self._keep - 1) * self._chunk), end)
        for occ in self._walk(start, near):
            found.append(occ)
            if len(found) >= limit:
                break
        lo = near
        for hi in (min(start + _FAR_STAGE, end), end):
            if len(found) >= limit:
                break
            found += expand(self.items, self.tz, lo, hi) if lo < hi else []
            lo = max(lo, hi)
        kept = tuple(found[:limit])
        through = kept[0].start if kept else end + SEARCH_HORIZON
        if len(kept) < limit:  # a later start lets occurrences beyond ``end`` into the window
            beyond = first_start(self.items, self.tz, end - TICK)
            through = min(through, beyond - within if beyond is not None else start + SEARCH_HORIZON)
        return _Kept(start, through, kept)
