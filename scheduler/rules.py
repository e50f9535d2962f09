"""RFC 5545 recurrence rules: validation and construction on top of python-dateutil.

Rules are expanded in device-local wall time (naive datetimes), so "every day at 06:00" stays at
06:00 whatever the UTC offset does. Expansion of a rule whose ``dtstart`` lies years back would make
dateutil walk every period since then; :func:`rule_near` moves ``dtstart`` forward by a whole number
of periods where that provably leaves the rule's instants unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

UNSAFE_FREQS = frozenset({"SECONDLY", "MINUTELY"})
# Periods of the frequencies whose instants do not depend on which period dtstart falls in, as long
# as dtstart keeps its weekday (WEEKLY) and time of day (DAILY, WEEKLY) or minute (HOURLY).
_PERIODS = {"WEEKLY": timedelta(weeks=1), "DAILY": timedelta(days=1), "HOURLY": timedelta(hours=1)}


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
    if "\n" in body or ":" in body:
        return ("a single RRULE line, e.g. FREQ=DAILY;BYHOUR=6;BYMINUTE=0", "put the first time in 'dtstart'")
    parts = rule_parts(body)
    if parts.get("FREQ") in UNSAFE_FREQS:
        return ("FREQ of HOURLY or slower", "a loudspeaker must not repeat every minute or second")
    if "COUNT" in parts and "UNTIL" in parts:
        return ("COUNT or UNTIL, not both", None)
    if parts.get("UNTIL", "").endswith("Z"):
        return ("UNTIL in device local time (no Z)", "or use 'valid_until' with a UTC offset")
    try:
        base_rule(body, local_naive(dtstart, tz))
    except (ValueError, TypeError, KeyError) as exc:
        return ("a valid RFC 5545 recurrence rule", str(exc) or type(exc).__name__)
    return None


# Small on purpose: a schedule of 10,000 rules at spread times would keep thousands of parsed rules
# (about 1 KB each) that nothing reuses, since each chunk of the timeline is expanded once.
@lru_cache(maxsize=256)
def base_rule(body: str, dtstart_local: datetime) -> rrule:
    """The parsed rule with its own ``dtstart``; parsing is cached because items repeat."""
    parsed = rrulestr(body, dtstart=dtstart_local)
    if not isinstance(parsed, rrule):
        raise ValueError("expected one RRULE")
    return parsed


def rule_near(text: str, dtstart_local: datetime, not_after: datetime) -> rrule:
    """A rule with the same instants from ``not_after`` on, whose dtstart is as late as possible."""
    body = rule_body(text)
    rule = base_rule(body, dtstart_local)
    parts = rule_parts(body)
    period = _PERIODS.get(parts.get("FREQ", ""))
    if period is None or "COUNT" in parts:
        return rule
    period *= int(parts.get("INTERVAL", "1"))
    steps = (not_after - dtstart_local) // period
    if steps <= 0:
        return rule
    return rule.replace(dtstart=dtstart_local + steps * period)
