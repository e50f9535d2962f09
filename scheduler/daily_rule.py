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
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

_SPELLING = re.compile(r"FREQ=DAILY(;(INTERVAL|BYHOUR|BYMINUTE|BYSECOND)=\d{1,4}(,\d{1,4})*)*", re.IGNORECASE)
_LIMITS = {"BYHOUR": 23, "BYMINUTE": 59, "BYSECOND": 59}


@dataclass(frozen=True, slots=True)
class DailyRule:
    """Starts every ``interval`` days from dtstart's date, at ``times`` (sorted), not before ``dtstart``."""

    dtstart: datetime
    interval: int
    times: tuple[time, ...]

    def between(self, lo: datetime, hi: datetime) -> list[datetime]:
        """The starts in ``[lo, hi]`` (naive local wall time), sorted; as ``rrule.between(inc=True)``."""
        first_day = self.dtstart.date()
        lo_day = max(lo.date(), first_day)
        behind = (lo_day - first_day).days
        day = first_day + timedelta(days=-(-behind // self.interval) * self.interval)
        step = timedelta(days=self.interval)
        last_day = min(hi.date(), date.max - step)  # no OverflowError past the year 9999
        found = []
        while day <= last_day:
            for moment in _on(day, self.times):
                if lo <= moment <= hi and moment >= self.dtstart:
                    found.append(moment)
            day += step
        return found


def _on(day: date, times: tuple[time, ...]) -> list[datetime]:
    return [datetime.combine(day, at) for at in times]


def daily_rule(body: str, parts: dict[str, str], dtstart: datetime) -> DailyRule | None:
    """``body`` (its ``parts``, as scheduler.rules.rule_parts reads them) as a DailyRule, or None
    when only dateutil can say what it means; ``dtstart`` is naive local wall time."""
    if dtstart.microsecond or dtstart.tzinfo is not None or not _SPELLING.fullmatch(body):
        return None
    if body.count(";") + 1 != len(parts):  # a part given twice
        return None
    values = {}
    for name, limit in _LIMITS.items():
        numbers = sorted({int(value) for value in parts[name].split(",")}) if name in parts else None
        if numbers is not None and numbers[-1] > limit:
            return None
        values[name] = numbers or [getattr(dtstart, name.removeprefix("BY").lower())]
    interval = int(parts.get("INTERVAL", "1"))
    if interval < 1:  # dateutil reads it; scheduler.rules refuses it
        return None
    times = tuple(
        time(hour, minute, second)
        for hour in values["BYHOUR"]
        for minute in values["BYMINUTE"]
        for second in values["BYSECOND"]
    )
    return DailyRule(dtstart, interval, times)
