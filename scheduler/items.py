"""Schedule items: the model a schedule file describes, and its validation.

``parse_items`` turns the plain data of a schedule file (``{"items": [...]}``, as YAML or JSON loads
it) into :class:`Item` objects and a list of :class:`Finding` — every problem, not only the first.
Items with a finding are dropped; the caller decides whether a partly bad file is acceptable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo

from foundation.errors import ScheduleError
from foundation.findings import Finding, FindingList, KeyPath, format_key_path
from scheduler.fields import (
    DATE_SPAN,
    ITEM_KEYS,
    in_date_range,
    parse_at,
    parse_choice,
    parse_dtstart,
    parse_id,
    parse_text,
    parse_validity,
    parse_volume,
    parse_zones,
    unknown_keys,
)
from scheduler.rules import rule_problem

__all__ = ["Finding", "Item", "Level", "Outcome", "parse_items"]


class Level(IntEnum):
    """Bulletin levels of Circular 39/2020/TT-BTTTT; a higher level pre-empts a lower one."""

    NORMAL = 1
    PRIORITY = 2
    EMERGENCY = 3


class Outcome(StrEnum):
    """Final outcome of one occurrence in the play log; each occurrence gets exactly one."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    MISSED = "missed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Item:
    """One schedule entry: an audio file played at one instant (``at``) or on a recurrence rule.

    ``zones`` None means every zone. ``dtstart`` may be naive (device local time) or aware; ``at``,
    ``valid_from`` and ``valid_until`` are aware instants (``valid_until`` is exclusive).
    """

    id: str
    audio: str
    level: Level = Level.NORMAL
    zones: frozenset[str] | None = None
    volume: int | None = None
    at: datetime | None = None
    rrule: str | None = None
    dtstart: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    # True from parse_items, which has just checked the rule in the device's time zone: checking it
    # again here would cost as much again for a manifest of 10,000 rules.  Not a field.
    rule_checked: InitVar[bool] = False

    def __post_init__(self, rule_checked: bool) -> None:
        problems = _invariant_problems(self, rule_checked)
        if problems:
            raise ScheduleError([f"schedule item {self.id!r}: {p}" for p in problems])

    def resolved_zones(self, all_zones: frozenset[str]) -> frozenset[str]:
        """The zones this item plays in, with None meaning ``all_zones``."""
        return all_zones if self.zones is None else self.zones


def _invariant_problems(item: Item, rule_checked: bool) -> list[str]:
    problems = []
    if (item.at is None) == (item.rrule is None):
        problems.append("needs exactly one of 'at' or 'rrule'")
    if item.rrule is not None and item.dtstart is None:
        problems.append("'rrule' needs 'dtstart'")
    for name in ("at", "valid_from", "valid_until"):
        value = getattr(item, name)
        if value is not None and value.utcoffset() is None:
            problems.append(f"{name!r} must be an aware datetime")
        if value is not None and not in_date_range(value - timedelta(days=1 if name == "valid_until" else 0)):
            problems.append(f"{name!r} must lie {DATE_SPAN}")
    if item.volume is not None and not 0 <= item.volume <= 100:
        problems.append(f"volume {item.volume} outside 0..100")
    if item.valid_from and item.valid_until and item.valid_until <= item.valid_from:
        problems.append("'valid_until' must be after 'valid_from'")
    if item.rrule is not None and item.dtstart is not None and not rule_checked:
        problem = rule_problem(item.rrule, item.dtstart, ZoneInfo("UTC"))
        if problem is not None:
            problems.append(f"rrule {item.rrule!r}: expected {problem[0]}")
    return problems


def parse_items(
    raw: object, tz: ZoneInfo, known_zones: frozenset[str] | None = None
) -> tuple[list[Item], list[Finding]]:
    """Validate a schedule file's data; return the good items and every finding."""
    findings = FindingList()
    if not isinstance(raw, Mapping):
        findings.add((), raw, "a mapping with an 'items' list")
        return [], findings.items
    unknown_keys(raw, ("items",), (), findings)
    entries = raw.get("items")
    if not isinstance(entries, list):
        findings.add(("items",), entries, "a list of schedule items")
        return [], findings.items
    items: list[Item] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        mark = len(findings.items)
        item = _parse_item(entry, ("items", index), tz, known_zones, findings)
        _check_unique_id(entry, index, first_index, findings)
        if item is not None and len(findings.items) == mark:
            items.append(item)
    return items, findings.items


def _check_unique_id(entry: object, index: int, first_index: dict[str, int], findings: FindingList) -> None:
    ident = entry.get("id") if isinstance(entry, Mapping) else None
    if not isinstance(ident, str):
        return
    if ident.strip() in first_index:
        hint = f"first used by {format_key_path(('items', first_index[ident.strip()]))}"
        findings.add(("items", index, "id"), ident, "an id not used by another item", hint)
    else:
        first_index[ident.strip()] = index


_LEVELS = {level.name.lower(): level for level in Level}


@dataclass(frozen=True)
class _Timing:
    at: datetime | None
    rrule: str | None
    dtstart: datetime | None
    valid_from: datetime | None
    valid_until: datetime | None


def _parse_item(
    entry: object, path: KeyPath, tz: ZoneInfo, known_zones: frozenset[str] | None, findings: FindingList
) -> Item | None:
    if not isinstance(entry, Mapping):
        findings.add(path, entry, "a mapping with keys " + ", ".join(ITEM_KEYS))
        return None
    mark = len(findings.items)
    unknown_keys(entry, ITEM_KEYS, path, findings)
    ident = parse_id(entry, path, findings)
    audio = parse_text(entry, "audio", path, findings, required=True)
    level = parse_choice(entry, "priority", path, findings, _LEVELS) if "priority" in entry else Level.NORMAL
    zones = parse_zones(entry, path, known_zones, findings)
    volume = parse_volume(entry, path, findings)
    timing = _parse_timing(entry, path, tz, findings)
    if len(findings.items) > mark or ident is None or audio is None or level is None:
        return None
    return Item(ident, audio, level, zones, volume, **vars(timing), rule_checked=True)


def _parse_timing(entry: Mapping[str, object], path: KeyPath, tz: ZoneInfo, findings: FindingList) -> _Timing:
    rule = parse_text(entry, "rrule", path, findings, required=False)
    dtstart = parse_dtstart(entry, path, tz, findings)
    if ("at" in entry) == ("rrule" in entry):
        found = "both" if "at" in entry else "neither"
        findings.add(path, found, "exactly one of 'at' (one instant) or 'rrule' (recurring)")
    elif "rrule" in entry and "dtstart" not in entry:
        findings.add((*path, "dtstart"), None, "the rule's first local date-time, e.g. 2025-03-01 06:00")
    elif "at" in entry and "dtstart" in entry:
        findings.add((*path, "dtstart"), entry["dtstart"], "no 'dtstart' with 'at' (only with 'rrule')")
    if rule is not None and dtstart is not None:
        problem = rule_problem(rule, dtstart, tz)
        if problem is not None:
            findings.add((*path, "rrule"), rule, problem[0], problem[1])
    valid_from = parse_validity(entry, "valid_from", path, tz, findings)
    valid_until = parse_validity(entry, "valid_until", path, tz, findings)
    if valid_from and valid_until and valid_until <= valid_from:
        findings.add((*path, "valid_until"), entry["valid_until"], "a time after 'valid_from'")
    at = parse_at(entry, path, tz, findings)
    return _Timing(at, rule, dtstart, valid_from, valid_until)
