"""Daily and weekly rules at fixed times of day, expanded without dateutil.

Most rules a commune writes are ``FREQ=DAILY;BYHOUR=6;BYMINUTE=30`` or
``FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=17``: every INTERVAL days (or weeks, counted from the Monday of
dtstart's week), on the given weekdays, at each time of day the BYHOUR x BYMINUTE x BYSECOND values
make (each part by default dtstart's own), from dtstart on.  Parsing such a rule with dateutil and
walking it costs far more than the arithmetic, and a 10,000-rule manifest does it for every rule
when it is checked and again for each next start (issue 8).  :func:`plain_rule` recognises exactly
these rules, in a spelling dateutil reads the same way, with every value in range; any other rule
(COUNT, UNTIL, WKST, BYDAY with an ordinal or on a daily rule, a weekly INTERVAL over a year, a
value out of range, a part given twice, blanks) returns None and goes to dateutil.
``tests/test_plain_rule.py`` checks the starts and the verdicts against dateutil's.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import NamedTuple

_SECOND, _DAY = timedelta(seconds=1), 86_400
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAYS = "(?:MO|TU|WE|TH|FR|SA|SU)"
_SPELLING = re.compile(
    rf"FREQ=(DAILY|WEEKLY)((?:;(?:INTERVAL|BYHOUR|BYMINUTE|BYSECOND)=\d{{1,4}}(?:,\d{{1,4}})*"
    rf"|;BYDAY={_DAYS}(?:,{_DAYS})*)*)",
    re.IGNORECASE,
)
_PART = re.compile(r";(\w+)=([^;]*)")
MAX_WEEKLY_INTERVAL = 52  # the first start of a weekly rule then lies within a year of dtstart


class PlainRule(NamedTuple):  # a tuple: a 10,000-rule manifest makes one per rule, twice
    """Starts every ``interval`` periods (a day, or a week from a Monday) from ``origin``, at
    ``offsets`` seconds into each (sorted), never before ``dtstart``."""

    dtstart: datetime
    weekly: bool
    interval: int
    origin: datetime
    offsets: tuple[int, ...]

    def between(self, lo: datetime, hi: datetime) -> list[datetime]:
        """The starts in ``[lo, hi]`` (naive local wall time), sorted; as ``rrule.between(inc=True)``."""
        origin = self.origin  # whole seconds from it: integers, not datetimes
        first = max(-((origin - lo) // _SECOND), (self.dtstart - origin) // _SECOND)  # lo rounded up
        last = (hi - origin) // _SECOND
        period = self.interval * _DAY * (7 if self.weekly else 1)
        found: list[datetime] = []
        for start in range(max(0, first // period) * period, last + 1, period):
            found.extend(origin + timedelta(seconds=start + offset) for offset in self.offsets
                         if first <= start + offset <= last)  # fmt: skip
        return found


def plain_spelling(body: str) -> bool:
    """Whether ``body`` is spelled as a rule :func:`plain_rule` may read (its values unchecked)."""
    return _SPELLING.fullmatch(body) is not None


def plain_rule(body: str, dtstart: datetime) -> PlainRule | None:
    """``body`` (without ``RRULE:``) as a PlainRule, or None when only dateutil can say what it
    means; ``dtstart`` is naive local wall time."""
    if dtstart.microsecond or dtstart.tzinfo is not None:
        return None
    spelled = _SPELLING.fullmatch(body)
    if spelled is None:
        return None
    weekly = spelled.group(1).upper() == "WEEKLY"
    pairs = _PART.findall(spelled.group(2).upper())
    given = dict(pairs)
    if len(given) != len(pairs):  # a part given twice
        return None
    interval = given.pop("INTERVAL", "1")
    if not interval.isdigit() or int(interval) < 1:  # dateutil refuses a list; scheduler.rules refuses 0
        return None
    days = _days(given.pop("BYDAY", None), weekly, int(interval), dtstart)
    times = _times_of_day(given, dtstart)
    if days is None or times is None:
        return None
    origin = dtstart.replace(hour=0, minute=0, second=0)
    if weekly:
        origin -= timedelta(days=dtstart.weekday())
    if len(days) == len(times) == 1:  # the usual rule: one time on one day of its period
        return PlainRule(dtstart, weekly, int(interval), origin, (days[0] * _DAY + times[0],))
    offsets = sorted({day * _DAY + second for day in days for second in times})
    return PlainRule(dtstart, weekly, int(interval), origin, tuple(offsets))


def _days(text: str | None, weekly: bool, interval: int, dtstart: datetime) -> list[int] | None:
    """The days into each period (a day, or a week from a Monday) on which the rule starts."""
    if not weekly:
        return None if text is not None else [0]
    if interval > MAX_WEEKLY_INTERVAL:
        return None
    return [_WEEKDAYS.index(day) for day in text.split(",")] if text else [dtstart.weekday()]


def _times_of_day(given: dict[str, str], dtstart: datetime) -> list[int] | None:
    hours = _numbers(given.get("BYHOUR"), dtstart.hour, 23)
    minutes = _numbers(given.get("BYMINUTE"), dtstart.minute, 59)
    seconds = _numbers(given.get("BYSECOND"), dtstart.second, 59)
    if hours is None or minutes is None or seconds is None:
        return None
    return [h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds]


def _numbers(text: str | None, default: int, top: int) -> list[int] | None:
    if text is None:
        return [default]
    if "," not in text:  # the usual part: one value
        return [int(text)] if int(text) <= top else None
    numbers = [int(value) for value in text.split(",")]
    return None if max(numbers) > top else numbers
