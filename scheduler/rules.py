"""RFC 5545 recurrence rules: validation and construction on top of python-dateutil.

Rules are expanded in device-local wall time (naive datetimes), so "every day at 06:00" stays at
06:00 whatever the UTC offset does. Expansion of a rule whose ``dtstart`` lies years back would make
dateutil walk every period since then; :func:`rule_near` moves ``dtstart`` forward by a whole number
of periods where that provably leaves the rule's instants unchanged, and turns a COUNT rule into the
UNTIL rule with the same starts (its last start is found once) so that it moves forward too.

:func:`rule_problem` refuses what would defeat the scheduler: starts closer than
:data:`~scheduler.rule_spacing.MIN_GAP` (:mod:`scheduler.rule_spacing`), INTERVAL and COUNT out of
bounds, dates out of range, and a rule that does not start within :data:`PROBE_YEARS` of its
dtstart.  dateutil walks a rule's periods until one yields a start, up to the year 9999: a rule
that never starts would cost that walk on every expansion, and finding out costs it once, so the
probe runs on a copy of the rule moved to years near 9999 whose calendars (weekdays, leap years) are
those of the years after dtstart; the walk then ends within decades.

Daily and weekly rules at fixed times of day, nearly every rule a commune writes, are checked and
expanded by arithmetic instead (:mod:`scheduler.plain_rule`), with the same verdicts and starts.
"""

from __future__ import annotations

import calendar
from datetime import MAXYEAR, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from scheduler.fields import DATE_SPAN, LAST_DAY, in_date_range
from scheduler.plain_rule import plain_rule, plain_spelling
from scheduler.rule_spacing import daily_too_close, too_close

UNSAFE_FREQS = frozenset({"SECONDLY", "MINUTELY"})
MAX_RULE_CHARS = 1000
MAX_INTERVAL = 1000
MAX_COUNT = 1000  # a longer series is written with UNTIL or valid_until
PROBE_YEARS = 8  # 29 February comes back within 8 years (2096, then 2104)
# Periods of the frequencies whose instants do not depend on which period dtstart falls in, as long
# as dtstart keeps its weekday (WEEKLY) and time of day (DAILY, WEEKLY) or minute (HOURLY).
_PERIODS = {"WEEKLY": timedelta(weeks=1), "DAILY": timedelta(days=1), "HOURLY": timedelta(hours=1)}
_VALID = "a valid RFC 5545 recurrence rule"


def rule_body(text: str) -> str:
    """The rule without an optional ``RRULE:`` prefix and surrounding blanks."""
    text = text.strip()
    return text[len("RRULE:") :] if text.upper().startswith("RRULE:") else text


def rule_parts(text: str) -> dict[str, str]:
    """``FREQ=DAILY;BYHOUR=6`` as ``{"FREQ": "DAILY", "BYHOUR": "6"}`` (names upper-cased)."""
    parts = {}
    for chunk in rule_body(text).split(";"):
        name, _, value = chunk.partition("=")
        parts[name.strip().upper()] = value.strip().upper()
    return parts


def local_naive(value: datetime, tz: ZoneInfo) -> datetime:
    """Device-local wall time of ``value``; a naive value is already local."""
    if value.utcoffset() is None:
        return value
    return value.astimezone(tz).replace(tzinfo=None)


def rule_problem(text: str, dtstart: datetime, tz: ZoneInfo) -> tuple[str, str | None] | None:
    """Why ``text`` is not an acceptable rule, as (expected, hint), or None when it is fine."""
    body = rule_body(text)
    if len(body) > MAX_RULE_CHARS:
        return (f"a rule of at most {MAX_RULE_CHARS} characters", None)
    problem = None if plain_spelling(body) else _text_problem(body)  # a plain rule has none of them
    if problem is not None:
        return problem
    if not in_date_range(dtstart):
        return (f"a dtstart {DATE_SPAN}", None)
    return _local_problem(body, local_naive(dtstart, tz))


def _text_problem(body: str) -> tuple[str, str | None] | None:
    if "\n" in body or ":" in body:
        return ("a single RRULE line, e.g. FREQ=DAILY;BYHOUR=6;BYMINUTE=0", "put the first time in 'dtstart'")
    parts = rule_parts(body)
    if parts.get("FREQ") in UNSAFE_FREQS:
        return ("FREQ of HOURLY or slower", "a loudspeaker must not repeat every minute or second")
    if "BYEASTER" in parts:
        return ("the parts of RFC 5545", "BYEASTER is an extension of python-dateutil")
    if "COUNT" in parts and "UNTIL" in parts:
        return ("COUNT or UNTIL, not both", None)
    if parts.get("UNTIL", "").endswith("Z"):
        return ("UNTIL in device local time (no Z)", "or use 'valid_until' with a UTC offset")
    return None


@lru_cache(maxsize=4096)
def _local_problem(body: str, dtstart: datetime) -> tuple[str, str | None] | None:
    """The checks that need the parsed rule; cached, as a file is read again on every reload."""
    try:
        plain = plain_rule(body, dtstart)
        if plain is not None:  # no COUNT, no UNTIL: it starts within INTERVAL periods, a year at most
            if plain.weekly:
                return too_close(rule_parts(body), dtstart)
            return _interval_problem(plain.interval) or daily_too_close(plain.offsets, plain.interval)
        parts = rule_parts(body)
        rule = base_rule(body, dtstart)
        return (
            _bounds_problem(rule, parts) or too_close(parts, dtstart) or _start_problem(rule, parts, dtstart)
        )
    except (ValueError, TypeError, KeyError, OverflowError, IndexError) as exc:
        return (_VALID, str(exc) or type(exc).__name__)


def _interval_problem(interval: int) -> tuple[str, str | None] | None:
    if not 1 <= interval <= MAX_INTERVAL:
        return (f"INTERVAL from 1 to {MAX_INTERVAL}", None)
    return None


def _bounds_problem(rule: rrule, parts: dict[str, str]) -> tuple[str, str | None] | None:
    if problem := _interval_problem(int(parts.get("INTERVAL") or 1)):
        return problem
    if "COUNT" in parts and not 1 <= int(parts["COUNT"]) <= MAX_COUNT:
        return (f"COUNT from 1 to {MAX_COUNT}", "for a longer series use UNTIL, or 'valid_until'")
    until = vars(rule).get("_until")
    if isinstance(until, datetime) and not in_date_range(until):
        return (f"UNTIL {DATE_SPAN}", "leave UNTIL out for no end")
    return None


def _start_problem(rule: rrule, parts: dict[str, str], dtstart: datetime) -> tuple[str, str | None] | None:
    """The rule must start within PROBE_YEARS of dtstart, and not end (UNTIL) before it starts."""
    first = _first_start(rule, dtstart, parts)
    if first is None:
        end = _add_years(dtstart, PROBE_YEARS)
        hint = (
            f"no start from {dtstart:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}: "
            "its parts never meet, as BYMONTH=2 and BYMONTHDAY=30 never do"
        )
        return (f"a rule that starts within {PROBE_YEARS} years of its dtstart", hint)
    until = vars(rule).get("_until")
    if isinstance(until, datetime) and first > until:
        return (
            "UNTIL at or after the rule's first start",
            f"its first start would be {first:%Y-%m-%d %H:%M}",
        )
    return None


def _first_start(rule: rrule, dtstart: datetime, parts: dict[str, str]) -> datetime | None:
    """The rule's first start within PROBE_YEARS of ``dtstart`` (ignoring COUNT and UNTIL), or None."""
    if parts.get("FREQ") == "HOURLY" and "BYSETPOS" in parts and not _setpos_fits_an_hour(parts):
        return None  # dateutil would walk every hour to the year 9999
    shift = _twin_shift(dtstart.year)
    moved = _add_years(dtstart, shift)
    probe = rule.replace(dtstart=moved, until=None, count=None)
    found = next(iter(probe), None)  # walks at most to the year 9999: decades from `moved`
    if found is None or found > _add_years(moved, PROBE_YEARS):
        return None
    return _add_years(found, -shift)


def _setpos_fits_an_hour(parts: dict[str, str]) -> bool:
    """HOURLY with BYSETPOS picks among each hour's minute:second values: some position must exist."""
    per_hour = 1
    for name in ("BYMINUTE", "BYSECOND"):
        per_hour *= len({int(value) for value in parts.get(name, "0").split(",") if value.strip()}) or 1
    positions = [int(value) for value in parts["BYSETPOS"].split(",") if value.strip()]
    return any(abs(position) <= per_hour for position in positions)


@lru_cache(maxsize=1024)
def _twin_shift(year: int) -> int:
    """Years to add to ``year`` so that the years around it fall on identical calendars as late as
    possible before 9999 (the Gregorian calendar repeats every 400 years, often sooner)."""
    span = range(-1, PROBE_YEARS + 2)
    top = MAXYEAR - PROBE_YEARS - 1 - year
    for shift in range(top, top - 401, -1):
        if all(_calendar(year + i) == _calendar(year + shift + i) for i in span):
            return shift
    return 0  # not reached: 400 years always match


def _calendar(year: int) -> tuple[int, bool]:
    return date(year, 1, 1).weekday(), calendar.isleap(year)


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a year that has none
        return moment.replace(year=moment.year + years, day=28)


# Small on purpose: a schedule of 10,000 rules at spread times would keep thousands of parsed rules
# (about 1 KB each) that nothing reuses, since each chunk of the timeline is expanded once.
@lru_cache(maxsize=256)
def base_rule(body: str, dtstart_local: datetime) -> rrule:
    """The parsed rule with its own ``dtstart``; parsing is cached because items repeat."""
    parsed = rrulestr(body, dtstart=dtstart_local)
    if not isinstance(parsed, rrule):
        raise ValueError("expected one RRULE")
    return parsed


@lru_cache(maxsize=4096)
def _last_start(body: str, dtstart_local: datetime) -> datetime | None:
    """The last start of a COUNT rule (at most MAX_COUNT to walk), found once; the walk stops
    past the supported dates, as the starts after them never matter."""
    last = None
    for last in base_rule(body, dtstart_local):
        if last.date() > LAST_DAY:
            break
    return last


def local_starts(text: str, dtstart_local: datetime, lo: datetime, hi: datetime) -> list[datetime]:
    """The rule's starts in ``[lo, hi]``, all naive local wall time, sorted: a daily or weekly rule at
    fixed times by arithmetic (scheduler.plain_rule), any other through dateutil (:func:`rule_near`)."""
    body = rule_body(text)
    plain = plain_rule(body, dtstart_local)
    if plain is not None:
        return plain.between(lo, hi)
    return list(rule_near(body, dtstart_local, lo).between(lo, hi, inc=True))


def rule_near(text: str, dtstart_local: datetime, not_after: datetime) -> rrule:
    """A rule with the same instants from ``not_after`` on, whose dtstart is as late as possible."""
    body = rule_body(text)
    rule = base_rule(body, dtstart_local)
    parts = rule_parts(body)
    if "COUNT" in parts:
        last = _last_start(body, dtstart_local)
        if last is None:
            return rule
        rule = rule.replace(count=None, until=last)  # the same starts, and UNTIL can move forward
    period = _PERIODS.get(parts.get("FREQ", ""))
    if period is None:
        return rule
    period *= int(parts.get("INTERVAL", "1"))
    steps = (not_after - dtstart_local) // period
    if steps <= 0:
        return rule
    return rule.replace(dtstart=dtstart_local + steps * period)
