"""Amplifier relay timing: which zones must be powered, so back-to-back audio never chatters.

A zone is wanted while audio plays or waits for it, ``preroll`` before a scheduled start (the
amplifier settles before the first word) and ``postroll`` after its audio ended (a next item soon
after keeps the relay closed instead of clicking off and on).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from scheduler.recurrence import Occurrence


class RelayHold:
    """Remembers until when each zone stays powered after its audio ended."""

    def __init__(self, postroll: timedelta) -> None:
        self.postroll = postroll
        self._until: dict[str, datetime] = {}

    def release(self, zones: Iterable[str], now: datetime) -> None:
        """Audio in ``zones`` ended at ``now``: hold them for ``postroll``."""
        for zone in zones:
            self._until[zone] = max(self._until.get(zone, now), now + self.postroll)

    def observe(self, now: datetime) -> None:
        """Forget expired holds; after a backward clock jump, hold no longer than ``postroll``."""
        limit = now + self.postroll
        self._until = {zone: min(until, limit) for zone, until in self._until.items() if until > now}

    def held(self, now: datetime) -> frozenset[str]:
        return frozenset(zone for zone, until in self._until.items() if now < until)

    def expiries(self) -> list[datetime]:
        return list(self._until.values())


def wanted_zones(
    occurrences: Iterable[Occurrence], held: frozenset[str], all_zones: frozenset[str]
) -> frozenset[str]:
    """Zones of the given occurrences (playing, queued, about to start) plus the held ones."""
    wanted = set(held)
    for occ in occurrences:
        wanted |= occ.item.resolved_zones(all_zones)
    return frozenset(wanted)
