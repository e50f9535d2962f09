"""Field parsers for schedule items: each reads one key, coerces it, and records findings.

Values arrive as YAML or JSON produce them: PyYAML already turns ``2025-03-01T06:00:00+07:00`` into
a datetime and ``2025-03-01`` into a date, JSON leaves strings; both are accepted.

Every date lies from 2000-01-01 to 2199-12-31 (:data:`FIRST_DAY`, :data:`LAST_DAY`): years 1 and
9999 overflow date arithmetic (``valid_until: 9999-12-31`` plus its day), a rule from 1900 costs a
century of expansion, and outside that span a date is a typo (or "forever", which is said by
leaving the key out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from foundation.findings import FindingList, KeyPath, did_you_mean

T = TypeVar("T")

ITEM_KEYS = (
    "id",
    "audio",
    "at",
    "rrule",
    "dtstart",
    "valid_from",
    "valid_until",
    "priority",
    "zones",
    "volume",
)


def unknown_keys(
    entry: Mapping[object, object], known: Iterable[str], path: KeyPath, out: FindingList
) -> None:
    known = tuple(known)
    for key in entry:
        if key not in known:
            hint = did_you_mean(key, known) or "known keys: " + ", ".join(known)
            out.add((*path, str(key)), key, "a known key", hint)


def parse_id(entry: Mapping[str, object], path: KeyPath, out: FindingList) -> str | None:
    value = entry.get("id")
    if isinstance(value, int | float) and not isinstance(value, bool):
        out.add((*path, "id"), value, "a text id", f"quote it: id: '{value}'")
        return None
    ident = parse_text(entry, "id", path, out, required=True)
    if ident is not None and ("@" in ident or any(ch.isspace() for ch in ident)):
        out.add((*path, "id"), ident, "an id without spaces or '@'", "use letters, digits, '-' and '_'")
        return None
    return ident


def parse_text(
    entry: Mapping[str, object], key: str, path: KeyPath, out: FindingList, *, required: bool
) -> str | None:
    if key not in entry:
        if required:
            out.add((*path, key), None, f"a non-empty '{key}'", "this key is required")
        return None
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        out.add((*path, key), value, "non-empty text")
        return None
    return value.strip()


def parse_choice(
    entry: Mapping[str, object], key: str, path: KeyPath, out: FindingList, choices: Mapping[str, T]
) -> T | None:
    value = entry.get(key)
    if isinstance(value, str) and value.strip().lower() in choices:
        return choices[value.strip().lower()]
    hint = did_you_mean(value, choices) or "one of " + ", ".join(choices)
    out.add((*path, key), value, "one of " + " | ".join(choices), hint)
    return None


def parse_volume(entry: Mapping[str, object], path: KeyPath, out: FindingList) -> int | None:
    value = entry.get("volume")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        out.add((*path, "volume"), value, "a whole number from 0 to 100 (percent)")
        return None
    return value


def parse_zones(
    entry: Mapping[str, object], path: KeyPath, known: frozenset[str] | None, out: FindingList
) -> frozenset[str] | None:
    if "zones" not in entry:
        return None
    value = entry["zones"]
    if isinstance(value, str):
        out.add((*path, "zones"), value, "a list of zone names", f"write zones: [{value}]")
        return None
    if not isinstance(value, list) or not value:
        out.add((*path, "zones"), value, "a non-empty list of zone names", "omit 'zones' for every zone")
        return None
    good = True
    for index, zone in enumerate(value):
        if not isinstance(zone, str) or (known is not None and zone not in known):
            hint = did_you_mean(zone, known) if known else None
            hint = hint or ("known zones: " + ", ".join(sorted(known)) if known else None)
            out.add((*path, "zones", index), zone, "a configured zone name", hint)
            good = False
    return frozenset(str(zone) for zone in value) if good else None


FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2199, 12, 31)
DATE_SPAN = f"from {FIRST_DAY} to {LAST_DAY}"
OUT_OF_RANGE = "is out of range"


def in_date_range(value: date) -> bool:
    """Whether ``value`` (a date, or a date-time as written, in its own offset) is a supported date."""
    day = value.date() if isinstance(value, datetime) else value
    return FIRST_DAY <= day <= LAST_DAY


def _as_temporal(value: object) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        return None


def _offset_hint(value: datetime, tz: ZoneInfo) -> str:
    offset = value.replace(tzinfo=tz).strftime("%z")
    return f"add the UTC offset, e.g. {value.isoformat(timespec='minutes')}{offset[:3]}:{offset[3:]}"


def parse_at(entry: Mapping[str, object], path: KeyPath, tz: ZoneInfo, out: FindingList) -> datetime | None:
    if "at" not in entry:
        return None
    value = _as_temporal(entry["at"])
    if isinstance(value, datetime) and value.utcoffset() is not None:
        if in_date_range(value):
            return value
        out.add((*path, "at"), entry["at"], f"a date-time with a UTC offset {DATE_SPAN}", None, OUT_OF_RANGE)
        return None
    hint = _offset_hint(value, tz) if isinstance(value, datetime) else None
    out.add((*path, "at"), entry["at"], "a date-time with a UTC offset, e.g. 2025-03-01T06:00:00+07:00", hint)
    return None


def parse_dtstart(
    entry: Mapping[str, object], path: KeyPath, tz: ZoneInfo, out: FindingList
) -> datetime | None:
    """``dtstart`` may be naive (device local time), aware, or a date (local midnight)."""
    if "dtstart" not in entry:
        return None
    value = _as_temporal(entry["dtstart"])
    if isinstance(value, date) and not in_date_range(value):
        out.add((*path, "dtstart"), entry["dtstart"], f"a local date-time {DATE_SPAN}", None, OUT_OF_RANGE)
        return None
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    if isinstance(value, date):
        return datetime.combine(value, time())
    out.add((*path, "dtstart"), entry["dtstart"], "a local date-time, e.g. 2025-03-01 06:00")
    return None


_NO_BOUND = {
    "valid_from": "leave out 'valid_from' to start at once",
    "valid_until": "leave out 'valid_until' for no end",
}


def parse_validity(
    entry: Mapping[str, object], key: str, path: KeyPath, tz: ZoneInfo, out: FindingList
) -> datetime | None:
    """An aware instant, or a date meaning a whole local day (``valid_until`` includes that day)."""
    if key not in entry:
        return None
    value = _as_temporal(entry[key])
    if isinstance(value, date) and not in_date_range(value):
        out.add((*path, key), entry[key], f"a date {DATE_SPAN}", _NO_BOUND[key], OUT_OF_RANGE)
        return None
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value + timedelta(days=1) if key == "valid_until" else value
        return datetime.combine(day, time(), tzinfo=tz)
    hint = _offset_hint(value, tz) if isinstance(value, datetime) else None
    out.add((*path, key), entry[key], "a date (2025-03-01) or a date-time with a UTC offset", hint)
    return None
