"""The broadcast report: what the boxes of each unit were to play and what they played, from play logs.

One row per unit at the level asked (``commune``, ``district``, ``province``: levels are data, so
any level the tree holds may be asked for).  Each box's occurrences count toward the unit at that
level among its unit's ancestors; a box with no unit at that level (a commune under no district,
since 2025) counts toward a row of its own with no unit.  The caller sees only the boxes its role
reaches (central.access), so a commune operator's province row holds its commune alone.

The figures, for occurrences scheduled from ``from`` 00:00 to the end of ``to`` in the boxes' zone:

- ``scheduled``: every occurrence a box recorded (final or not yet: ``pending`` counts those still
  waiting or playing), and every occurrence of a bulletin scheduled for a box that the box has not
  reported (``unreported``: it was off, offline, or has not sent its play log yet) once its start
  is :data:`GRACE` in the past; ``completed``, ``interrupted``, ``failed``, ``missed``, ``skipped``;
- ``missed_reasons``: each reason a box gave for a missed or skipped occurrence, with its count;
- ``emergency``: occurrences at the emergency level;
- ``scheduled_minutes``: the audio's length for each occurrence (for audio the central does not
  hold, a box's own file, what it played when it completed, else nothing); ``played_minutes``:
  from actual start to end, as the box recorded; ``ratio``: played over scheduled (``None`` when
  nothing was scheduled).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from central import db, manifests, registry
from central.access import Scope
from foundation.errors import LoaError
from scheduler.items import parse_items
from scheduler.recurrence import expand

MAX_DAYS = 3 * 366
OUTCOMES = ("completed", "interrupted", "failed", "missed", "skipped", "unreported")
GRACE = timedelta(minutes=5)  # a box reports an occurrence as it starts; give it this long
PENDING = ("waiting", "playing")
COLUMNS = ("unit", "name", "level", "boxes", "scheduled", "completed", "interrupted", "failed", "missed",
           "skipped", "unreported", "pending", "emergency", "scheduled_minutes", "played_minutes", "ratio",
           "missed_reasons")  # fmt: skip


class ReportError(LoaError, ValueError):
    """A report that cannot be made as asked (HTTP 422); the message says which parameter and why."""

    exit_code = 2


@dataclass
class UnitReport:
    unit: str | None
    name: str
    level: str
    boxes: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    scheduled_s: float = 0.0
    played_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        scheduled = sum(self.counts[name] for name in (*OUTCOMES, *PENDING))
        return {
            "unit": self.unit, "name": self.name, "level": self.level, "boxes": len(self.boxes),
            "scheduled": scheduled, **{name: self.counts[name] for name in OUTCOMES},
            "pending": sum(self.counts[name] for name in PENDING), "emergency": self.counts["emergency"],
            "scheduled_minutes": round(self.scheduled_s / 60, 2),
            "played_minutes": round(self.played_s / 60, 2),
            "ratio": round(self.played_s / self.scheduled_s, 4) if self.scheduled_s > 0 else None,
            "missed_reasons": dict(sorted(self.reasons.items(), key=lambda pair: (-pair[1], pair[0]))),
        }  # fmt: skip


def period(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start 00:00, the day after end 00:00)`` in the boxes' zone (``devices.timezone``);
    ReportError if backwards or long."""
    if end < start:
        raise ReportError(f"to {end.isoformat()} is before from {start.isoformat()}")
    if (end - start).days > MAX_DAYS:
        raise ReportError(f"from {start.isoformat()} to {end.isoformat()}: at most {MAX_DAYS} days at once")
    return (datetime.combine(start, time(), zone),
            datetime.combine(end + timedelta(days=1), time(), zone))  # fmt: skip


def levels(units: dict[str, registry.Unit]) -> list[str]:
    """The levels the tree holds, from the root down (as data: whatever the registry says)."""
    depth: dict[str, int] = {}
    for unit in units.values():
        depth[unit.level] = max(depth.get(unit.level, 0), len(registry.ancestry(units, unit.id)))
    return sorted(depth, key=lambda level: (depth[level], level))


def broadcasts(engine: Engine, scope: Scope, start: date, end: date, group_by: str,
               now: datetime, zone: ZoneInfo, *,
               kept_days: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The report's rows, one per unit at ``group_by`` that has a box the caller sees, by name; days
    and a bulletin's naive times are read in ``zone``, the boxes' (``devices.timezone``).

    ``kept_days``: how long the play log is kept (``retention.playlog_days``); a period that starts
    before is refused, since its bulletins' occurrences would all count as unreported."""
    units = scope.units
    if group_by not in levels(units):
        known = ", ".join(levels(units)) or "none yet"
        raise ReportError(f"group_by {group_by!r}: no unit has that level (levels: {known})")
    since, until = period(start, end, zone)
    if kept_days is not None:
        _check_kept(start, since, now - timedelta(days=kept_days), kept_days, zone)
    with engine.connect() as conn:
        devices = conn.execute(select(db.devices.c.id, db.devices.c.unit)).all()
        durations = {row.sha256: float(row.duration_s)
                     for row in conn.execute(select(db.audio.c.sha256, db.audio.c.duration_s))}  # fmt: skip
    report = _Report(units, group_by, durations)
    for device, unit in devices:
        if scope.sees_unit(unit):
            report.add_box(device, unit)
    report.count_logs(engine, since, until)
    for item_id, level, audio, starts, boxes in expected(engine, since, min(until, now - GRACE), zone):
        report.count_expected(item_id, level, audio, starts, boxes)
    return report.rows()


def _check_kept(start: date, since: datetime, cutoff: datetime, kept_days: int, zone: ZoneInfo) -> None:
    if since < cutoff:
        first = cutoff.astimezone(zone).date() + timedelta(days=1)
        raise ReportError(f"from {start.isoformat()}: the play log is kept {kept_days} days "
                          f"(retention.playlog_days): a report can start on {first} or later")  # fmt: skip


class _Report:
    """The rows being counted; play logs are streamed through it, never held whole."""

    def __init__(self, units: dict[str, registry.Unit], group_by: str, durations: dict[str, float]) -> None:
        self.units, self.group_by, self.durations = units, group_by, durations
        self.by_unit: dict[str | None, UnitReport] = {}
        self.groups: dict[str, str | None] = {}  # box -> its unit at group_by
        self.reported: Counter[tuple[str, str]] = Counter()  # (box, bulletin item) -> occurrences

    def row(self, device: str) -> UnitReport:
        group = self.groups[device]
        if group not in self.by_unit:
            name = self.units[group].name if group is not None else f"(no {self.group_by})"
            self.by_unit[group] = UnitReport(group, name, self.group_by)
        return self.by_unit[group]

    def add_box(self, device: str, unit: str) -> None:
        self.groups[device] = _group_of(self.units, unit, self.group_by)
        self.row(device).boxes.add(device)

    def count_logs(self, engine: Engine, since: datetime, until: datetime) -> None:
        columns = [db.playlogs.c[name] for name in ("device_id", "item_id", "audio", "level", "outcome",
                                                    "reason", "actual_start", "ended")]  # fmt: skip
        query = select(*columns).where(db.playlogs.c.scheduled_start >= since,
                                       db.playlogs.c.scheduled_start < until)  # fmt: skip
        with engine.connect() as conn:
            for log in conn.execution_options(yield_per=5000).execute(query):
                if log.device_id in self.groups:
                    self.reported[(log.device_id, log.item_id)] += 1
                    _count(self.row(log.device_id), log, self.durations)

    def count_expected(self, item_id: str, level: str, audio: str, starts: int, boxes: list[str]) -> None:
        """A bulletin's occurrences that a box never reported (counted, not matched one by one, so a
        year of a province's play logs is never held in memory)."""
        for device in boxes:
            missing = starts - self.reported[(device, item_id)] if device in self.groups else 0
            if missing > 0:
                row = self.row(device)
                row.counts["unreported"] += missing
                row.counts["emergency"] += missing if level == "emergency" else 0
                row.scheduled_s += missing * self.durations.get(audio, 0.0)

    def rows(self) -> list[dict[str, Any]]:
        ordered = sorted(self.by_unit.values(), key=lambda row: (row.unit is None, row.name))
        return [row.as_json() for row in ordered]


def expected(
    engine: Engine, since: datetime, until: datetime, zone: ZoneInfo
) -> Iterator[tuple[str, str, str, int, list[str]]]:
    """``(item id, level, audio, starts, boxes)`` for each bulletin scheduled for boxes: how many
    times it starts in ``[since, until)``, expanded by the boxes' own scheduler.  A box removed from
    service is expected to play only until it was removed (its boxes come in one tuple per end)."""
    if until <= since:
        return
    query = (select(db.bulletins, db.bulletin_targets.c.device_id, db.devices.c.removed_at)
             .join(db.bulletin_targets, db.bulletin_targets.c.bulletin_id == db.bulletins.c.id)
             .join(db.devices, db.devices.c.id == db.bulletin_targets.c.device_id)
             .where(db.bulletin_targets.c.status == "scheduled"))  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    boxes: dict[int, dict[datetime, list[str]]] = {}
    for row in rows:
        end = until if row.removed_at is None else min(until, row.removed_at)
        boxes.setdefault(row.id, {}).setdefault(end, []).append(row.device_id)
    for row in {row.id: row for row in rows}.values():
        # the very item the boxes get (central.manifests), so the report expands what they expand
        spec = manifests.row_spec(row, row.audio_sha256)
        items, findings = parse_items({"items": [spec]}, zone)
        if findings:  # checked when it was made: only a rule changed since could land here
            continue
        for end, devices in boxes[row.id].items():
            starts = len(expand(items, zone, since, end)) if end > since else 0
            if starts:
                yield manifests.item_id(row.id), row.level, row.audio_sha256, starts, devices


def _group_of(units: dict[str, registry.Unit], unit: str, level: str) -> str | None:
    return next((up for up in registry.ancestry(units, unit) if units[up].level == level), None)


def _count(row: UnitReport, log: Any, durations: dict[str, float]) -> None:
    row.counts[log.outcome] += 1
    if log.level == "emergency":
        row.counts["emergency"] += 1
    if log.outcome in ("missed", "skipped"):
        row.reasons[f"{log.outcome}: {log.reason or '(no reason given)'}"] += 1
    played = 0.0
    if log.actual_start is not None and log.ended is not None:
        played = max(0.0, (log.ended - log.actual_start).total_seconds())
    row.played_s += played
    planned = durations.get(log.audio)
    row.scheduled_s += planned if planned is not None else (played if log.outcome == "completed" else 0.0)


HEADINGS = {
    "en": dict(zip(COLUMNS, COLUMNS, strict=True)),
    "vi": dict(zip(COLUMNS, (
        "Mã đơn vị", "Tên đơn vị", "Cấp", "Số cụm loa", "Số lượt theo lịch", "Phát trọn vẹn", "Bị ngắt",
        "Lỗi", "Bỏ lỡ", "Bỏ qua", "Chưa báo cáo", "Đang chờ/đang phát", "Khẩn cấp", "Số phút theo lịch",
        "Số phút đã phát", "Tỷ lệ", "Lý do bỏ lỡ"), strict=True)),
}  # fmt: skip


def as_csv(rows: list[dict[str, Any]], lang: str = "en") -> bytes:
    """The rows as CSV a spreadsheet opens with Vietnamese intact: UTF-8 with a BOM, CRLF line ends."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    headings = HEADINGS.get(lang, HEADINGS["en"])
    writer.writerow([headings[column] for column in COLUMNS])
    for row in rows:
        reasons = "; ".join(f"{reason} ×{count}" for reason, count in row["missed_reasons"].items())
        values = {**row, "unit": row["unit"] or "", "ratio": "" if row["ratio"] is None else row["ratio"],
                  "missed_reasons": reasons}  # fmt: skip
        writer.writerow([values[column] for column in COLUMNS])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
