"""Occurrences: the instants at which schedule items start.

Rules are expanded in device-local wall time with python-dateutil, then converted to UTC; a local
time that does not exist (a DST gap; Vietnam has none) takes the offset in force before the gap, and
two local times that fall on the same UTC instant give one occurrence. Validity windows
(``valid_from`` inclusive, ``valid_until`` exclusive) filter the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.items import Item
from scheduler.rules import local_naive, local_starts

# Local wall time and UTC differ by at most a day; a DST change moves a local instant by hours.
_MARGIN = timedelta(hours=3)
_SEARCH_STEPS = (timedelta(days=1), timedelta(days=8), timedelta(days=40), timedelta(days=400))
SEARCH_HORIZON = sum(_SEARCH_STEPS, timedelta())  # how far first_start looks


@dataclass(frozen=True, slots=True)  # slots: a day of 10,000 daily rules is 10,000 of them
class Occurrence:
    """One start of one item; ``start`` is aware and normalised to UTC."""

    item: Item
    start: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", self.start.astimezone(UTC))

    @property
    def key(self) -> str:
        """Identity in the play log: the same item at the same instant is the same occurrence."""
        return f"{self.item.id}@{self.start.isoformat()}"

    @property
    def priority_key(self) -> tuple[int, datetime, str]:
        """Sort key for choosing what plays: higher level, then earlier start, then id."""
        return (-self.item.level, self.start, self.item.id)


def item_starts(item: Item, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in ``[start, end)`` at which ``item`` starts, sorted, within its validity."""
    lo = max(start, item.valid_from) if item.valid_from else start
    hi = min(end, item.valid_until) if item.valid_until else end
    if lo >= hi:
        return []
    if item.at is not None:
        return [item.at.astimezone(UTC)] if lo <= item.at < hi else []
    assert item.rrule is not None and item.dtstart is not None  # guaranteed by Item
    lo_local, hi_local = _local_window(lo, hi, tz)
    found = {
        local.replace(tzinfo=tz).astimezone(UTC)
        for local in local_starts(item.rrule, local_naive(item.dtstart, tz), lo_local, hi_local)
    }
    return sorted(t for t in found if lo <= t < hi)


@lru_cache(maxsize=8)  # a round of the audio thread asks for the same window for every item
def _local_window(lo: datetime, hi: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return local_naive(lo, tz) - _MARGIN, local_naive(hi, tz) + _MARGIN


def expand(items: Iterable[Item], tz: ZoneInfo, start: datetime, end: datetime) -> list[Occurrence]:
    """Every occurrence of ``items`` starting in ``[start, end)``, sorted by start then priority."""
    found = [Occurrence(item, t) for item in items for t in item_starts(item, tz, start, end)]
    return sorted(found, key=lambda occ: (occ.start, *occ.priority_key))


def first_start(items: Iterable[Item], tz: ZoneInfo, after: datetime) -> datetime | None:
    """The earliest occurrence start strictly after ``after``, searching ``SEARCH_HORIZON`` ahead
    (``[after + 1 µs, after + 1 µs + SEARCH_HORIZON)``)."""
    items = list(items)
    lo = after + timedelta(microseconds=1)
    for step in _SEARCH_STEPS:
        found = [starts[0] for item in items if (starts := item_starts(item, tz, lo, lo + step))]
        if found:
            return min(found)
        lo += step
    return None
