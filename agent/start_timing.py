"""Start timing: when to prepare an item and when to call ``play`` so that it *sounds* on time.

A player needs a few milliseconds between ``play()`` and its ``playing`` event (libVLC opens the
file, starts its decoder and audio output); the play log's actual start is that event's time.
:class:`StartTimer` keeps an estimate of that latency, the *lead*, from the agent's recent
playbacks, and the loop calls ``play`` ``lead`` before the scheduled instant.

The estimate is the median of the last few latencies: it is robust to the odd slow start (a
cold disk, a busy CPU) and, since the error of a start is its latency minus the lead, the median
makes early and late starts equally likely.  It is bounded to ``0..MAX_LEAD`` so a burst of
outliers can never move a start by more than that.

Shortly before a start the loop also asks :meth:`StartTimer.to_prepare` whether to hand the
next occurrence to ``Player.prepare``, so that the file is opened and parsed ahead of time.  The
agent does it when the scheduler wakes it anyway, at the relays' pre-roll: by then the previous
item has usually ended, so libVLC can load the file into its idle player and the start is only
``play()``; preparing earlier would load it while the previous item still plays (or starts).

Everything here is given ``now``; nothing reads a clock.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

from scheduler.recurrence import Occurrence

logger = logging.getLogger(__name__)

MAX_LEAD = timedelta(milliseconds=100)
DEFAULT_LEAD = timedelta(milliseconds=5)  # until the player or a playback has measured one
WINDOW = 15  # latencies kept; the median of these is the lead
MAX_LATENCY = timedelta(seconds=10)  # longer is not a start latency (clock step, hung backend)
PREPARE_AHEAD = timedelta(seconds=2)  # the default pre-roll: when the agent prepares the next item


class StartTimer:
    """The lead of ``play`` over the scheduled start, learnt from recent playbacks."""

    def __init__(self, initial: timedelta | None = None, window: int = WINDOW) -> None:
        self._initial = _bounded(DEFAULT_LEAD if initial is None else initial)
        self._latencies: deque[timedelta] = deque(maxlen=window)
        self._prepared: str | None = None

    def lead(self) -> timedelta:
        """How long before a start ``play`` should be called: 0..MAX_LEAD."""
        if not self._latencies:
            return self._initial
        return _bounded(statistics.median_low(self._latencies))

    def wake_at(self, start: datetime) -> datetime:
        """When to call ``play`` for an occurrence scheduled at ``start``."""
        return start - self.lead()

    def observe(self, asked_at: datetime, playing_at: datetime) -> None:
        """A playback asked for at ``asked_at`` reported ``playing`` at ``playing_at``."""
        latency = playing_at - asked_at
        if not timedelta(0) <= latency <= MAX_LATENCY:
            logger.debug("ignoring a start latency of %.3f s", latency.total_seconds())
            return
        self._latencies.append(latency)

    def to_prepare(
        self, upcoming: Sequence[Occurrence], now: datetime, ahead: timedelta = PREPARE_AHEAD
    ) -> Occurrence | None:
        """The next occurrence, once it is within ``ahead`` of ``now`` and not yet prepared.

        ``upcoming`` is the scheduler's list of occurrences not yet due, soonest first.  Each is
        returned once, so the loop can call this on every pass.
        """
        if not upcoming:
            return None
        first = upcoming[0]
        if first.key == self._prepared or first.start - now > ahead:
            return None
        self._prepared = first.key
        return first


def _bounded(lead: timedelta) -> timedelta:
    return min(MAX_LEAD, max(timedelta(0), lead))
