"""How close two starts of a recurrence rule can come, decided from the rule's parts.

Refusing ``FREQ=MINUTELY`` and ``SECONDLY`` is not enough: ``FREQ=HOURLY;BYMINUTE=0,...,59`` starts
every minute.  So the spacing of what a rule produces is bounded from below, without expanding it:

* every start has a time of day from ``T`` = hours x minutes x seconds, where BYHOUR, BYMINUTE and
  BYSECOND give each (by default dtstart's; for HOURLY, the hours INTERVAL reaches from dtstart);
* two starts on the same day are at least the smallest step between neighbours in ``T`` apart, and
  two on days ``D`` or more apart at least ``D`` days minus the span of ``T``, where ``D`` is the
  fewest days between two days the rule can use (INTERVAL for DAILY, the closest BYDAY for WEEKLY,
  28 for a monthly or yearly rule with no day parts, else 1);
* for HOURLY, two starts in the same hour are at least the smallest step between the hour's
  minute:second values apart, and two in different hours at least INTERVAL hours minus their span.

The bound is sound (BYDAY, BYMONTH, BYSETPOS and the like only remove starts) and exact for a daily
rule, or an hourly rule whose INTERVAL divides 24, with no day parts; ``tests/test_rule_limits.py``
checks both against dateutil's own expansion.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from foundation.units import format_duration

MIN_GAP = timedelta(minutes=5)  # why 5 minutes: docs/SCHEDULING.md
_DAY = 86_400
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY_PARTS = ("BYMONTHDAY", "BYDAY", "BYYEARDAY", "BYWEEKNO")


@dataclass(frozen=True)
class CloseStarts:
    """Two starts of a rule at the smallest gap it allows: seconds of the day, and the gap."""

    first: int
    then: int
    gap: int
    next_day: bool = False

    def describe(self) -> str:
        """``it can start at 06:58:00 and again at 07:00:00, 2min later``."""
        day = " the next day" if self.next_day else ""
        return (
            f"it can start at {_clock(self.first)} and again at {_clock(self.then)}{day}, "
            f"{format_duration(timedelta(seconds=self.gap))} later"
        )


def too_close(parts: Mapping[str, str], dtstart: datetime) -> tuple[str, str] | None:
    """(expected, hint) if the rule's starts can come closer than :data:`MIN_GAP`, else None.

    ``parts`` are those of a rule dateutil has accepted with this ``dtstart`` (local wall time).
    """
    return _verdict(closest_starts(parts, dtstart))


def daily_too_close(seconds: Sequence[int], interval: int) -> tuple[str, str] | None:
    """:func:`too_close` for a daily rule every ``interval`` days at ``seconds`` into the day
    (sorted, distinct), as scheduler.plain_rule reads it."""
    if len(seconds) == 1:  # one start a day at most: a day or more apart, far above MIN_GAP
        return None
    return _verdict(_by_time_of_day(list(seconds), interval))


def _verdict(closest: CloseStarts | None) -> tuple[str, str] | None:
    if closest is None or closest.gap >= MIN_GAP.total_seconds():
        return None
    return (f"starts at least {format_duration(MIN_GAP)} apart", closest.describe())


def closest_starts(parts: Mapping[str, str], dtstart: datetime) -> CloseStarts | None:
    """The closest two starts of the rule can come, or None if it has one time of day a week or
    further apart."""
    freq = parts["FREQ"]
    interval = int(parts.get("INTERVAL") or 1)
    within_hour = sorted(
        {
            m * 60 + s
            for m in _values(parts, "BYMINUTE", dtstart.minute)
            for s in _values(parts, "BYSECOND", dtstart.second)
        }
    )
    hours = _hours(parts, dtstart, interval) if freq == "HOURLY" else _values(parts, "BYHOUR", dtstart.hour)
    times = sorted({hour * 3600 + offset for hour in hours for offset in within_hour})
    by_day = _by_time_of_day(times, 1 if freq == "HOURLY" else _day_distance(parts, dtstart, interval))
    if freq != "HOURLY":
        return by_day
    hour = next((h for h in hours if h >= dtstart.hour), hours[0]) * 3600
    same_hour = min(
        (CloseStarts(hour + a, hour + b, b - a) for a, b in itertools.pairwise(within_hour)),
        key=lambda pair: pair.gap,
        default=None,
    )
    span = within_hour[-1] - within_hour[0]
    later = (hour + interval * 3600) % _DAY
    next_hour = CloseStarts(
        hour + within_hour[-1], later + within_hour[0], interval * 3600 - span, later < hour
    )
    by_hour = min((pair for pair in (same_hour, next_hour) if pair is not None), key=lambda pair: pair.gap)
    # Every pair is at least by_day apart, and at least the by_hour bound of its kind.
    return by_hour if by_day is None or by_hour.gap >= by_day.gap else by_day


def _by_time_of_day(times: list[int], days_apart: int) -> CloseStarts | None:
    pairs = [CloseStarts(a, b, b - a) for a, b in itertools.pairwise(times)]
    pairs.append(CloseStarts(times[-1], times[0], days_apart * _DAY - (times[-1] - times[0]), True))
    closest = min(pairs, key=lambda pair: pair.gap)
    return None if closest.gap >= 7 * _DAY else closest


def _values(parts: Mapping[str, str], name: str, default: int) -> list[int]:
    text = parts.get(name, "")
    return sorted({int(value) for value in text.split(",") if value.strip()}) if text else [default]


def _hours(parts: Mapping[str, str], dtstart: datetime, interval: int) -> list[int]:
    """The hours an HOURLY rule reaches: INTERVAL steps from dtstart's hour, within BYHOUR."""
    step = math.gcd(interval, 24)
    reached = [hour for hour in range(24) if (hour - dtstart.hour) % step == 0]
    if "BYHOUR" in parts:
        allowed = set(_values(parts, "BYHOUR", dtstart.hour))
        reached = [hour for hour in reached if hour in allowed]
    return reached or [dtstart.hour]  # dateutil refuses a BYHOUR it cannot reach


def _day_distance(parts: Mapping[str, str], dtstart: datetime, interval: int) -> int:
    """The fewest days between two days on which the rule can start."""
    freq = parts["FREQ"]
    if freq == "DAILY":
        return interval
    if freq == "WEEKLY":
        days = sorted(
            {_WEEKDAYS.index(day.strip()[-2:]) for day in parts.get("BYDAY", "").split(",") if day.strip()}
        )
        if not days and any(name in parts for name in _DAY_PARTS):
            return 1  # BYMONTHDAY and the like: any weekday (dtstart's is the default only without them)
        days = days or [dtstart.weekday()]
        if len(days) == 1:
            return 7 * interval
        return min((b - a) % 7 for a, b in zip(days, [*days[1:], days[0]], strict=True))
    # MONTHLY, YEARLY: without day parts dateutil uses dtstart's day of the month, once a month.
    return 1 if any(name in parts for name in _DAY_PARTS) else 28


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds % _DAY, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
