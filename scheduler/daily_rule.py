"""Daily rules at fixed times of day, expanded without dateutil.

Most rules a commune writes are ``FREQ=DAILY;BYHOUR=6;BYMINUTE=30``: every INTERVAL days from
dtstart's date, at each time of day the BYHOUR x BYMINUTE x BYSECOND values make (each part by
default dtstart's own), from dtstart on.  Parsing such a rule with dateutil and walking it costs
far more than the arithmetic, and a 10,000-rule manifest does it for every rule when it is checked
and again for each next start (issue 8).  :func:`daily_rule` recognises exactly these rules, in the
one spelling dateutil reads the same way, with every value in range; any other rule (COUNT, UNTIL,
BYDAY, a value out of range, a part given twice, blanks) returns None and goes to dateutil.
``tests/test_rule_limits.py`` checks the starts against dateutil's own expansion.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import NamedTuple

_SECOND, _DAY = timedelta(seconds=1), 86_400
_SPELLING = re.compile(r"FREQ=DAILY((?:;(?:INTERVAL|BYHOUR|BYMINUTE|BYSECOND)=\d{1,4}(?:,\d{1,4})*)*)", re.I)


class DailyRule(NamedTuple):  # a tuple: a 10,000-rule manifest makes one per rule, twice
    """Starts every ``interval`` days from dtstart's date, at ``seconds`` into the day (sorted),
    never before ``dtstart``."""

    dtstart: datetime
    interval: int
    seconds: tuple[int, ...]

    def between(self, lo: datetime, hi: datetime) -> list[datetime]:
        """The starts in ``[lo, hi]`` (naive local wall time), sorted; as ``rrule.between(inc=True)``."""
        # In whole seconds from the midnight that begins dtstart's day: integers, not datetimes.
        origin = datetime.combine(self.dtstart.date(), time())
        first = max(-((origin - lo) // _SECOND), (self.dtstart - origin) // _SECOND)  # lo rounded up
        last = (hi - origin) // _SECOND
        period = self.interval * _DAY
        found: list[datetime] = []
        for day in range(max(0, first // period) * period, last + 1, period):
            found.extend(origin + timedelta(seconds=day + second) for second in self.seconds
                         if first <= day + second <= last)  # fmt: skip
        return found


def daily_spelling(body: str) -> bool:
    """Whether ``body`` is spelled as a rule :func:`daily_rule` may read (its values unchecked)."""
    return _SPELLING.fullmatch(body) is not None


def daily_rule(body: str, dtstart: datetime) -> DailyRule | None:
    """``body`` (without ``RRULE:``) as a DailyRule, or None when only dateutil can say what it
    means; ``dtstart`` is naive local wall time."""
    if dtstart.microsecond or dtstart.tzinfo is not None:
        return None
    spelled = _SPELLING.fullmatch(body)
    if spelled is None:
        return None
    chunks = spelled.group(1)[1:].upper().split(";") if spelled.group(1) else []
    given = dict(chunk.split("=") for chunk in chunks)
    if len(given) != len(chunks):  # a part given twice
        return None
    interval = given.pop("INTERVAL", "1")
    if not interval.isdigit() or int(interval) < 1:  # dateutil refuses a list; scheduler.rules refuses 0
        return None
    hours = _numbers(given.get("BYHOUR"), dtstart.hour, 23)
    minutes = _numbers(given.get("BYMINUTE"), dtstart.minute, 59)
    seconds = _numbers(given.get("BYSECOND"), dtstart.second, 59)
    if hours is None or minutes is None or seconds is None:
        return None
    if len(hours) == len(minutes) == len(seconds) == 1:  # the usual rule: one time of day
        return DailyRule(dtstart, int(interval), (hours[0] * 3600 + minutes[0] * 60 + seconds[0],))
    of_day = {h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds}
    return DailyRule(dtstart, int(interval), tuple(sorted(of_day)))


def _numbers(text: str | None, default: int, top: int) -> list[int] | None:
    if text is None:
        return [default]
    numbers = [int(value) for value in text.split(",")]
    return None if max(numbers) > top else numbers
