"""Colliding priority bulletins, and the commune operator's order for them (Circular 39: "a
``priority`` bulletin is scheduled by its sender, and where it collides with the commune's own
priority item the commune operator sets the order").

A **collision**: on a box, a priority bulletin of the box's own commune and a priority bulletin of
another unit (a district, the province, an admin) both scheduled, with an occurrence of one
playing while one of the other is due (start to start plus the audio's length), within the next
:data:`HORIZON`.  Left alone, the boxes play them as their scheduler plays two items of one level:
the earlier start first, the other queued until it ends (docs/SCHEDULING.md, "Levels and
resolution"), and skipped if that is more than 15 minutes late.

The commune's operator (or an admin) **sets the order**: the one chosen to go first keeps its time,
and the other starts as the first ends, in the manifests of the commune's boxes that have both.
The order travels in fields every box already reads (the item's ``at``, or its rule's ``dtstart``,
moved: central.manifests.shifted); no new manifest field, so a box of any version plays it.  A
repeating bulletin can follow another only where every one of its occurrences collides the same
way (two daily bulletins, say); otherwise the order is refused with the reason, and the operator
changes a time instead.  The bulletins themselves are unchanged: the sender still sees its time,
and the report counts the same occurrences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select

from central import db, manifests, registry
from central.access import Forbidden, Scope
from central.context import Central
from central.targets import BulletinError
from scheduler.items import parse_items
from scheduler.recurrence import expand

HORIZON = timedelta(days=31)

Span = tuple[datetime, datetime]


@dataclass
class Collision:
    unit: str
    own: int  # the commune's bulletin
    other: int  # another unit's bulletin
    at: datetime  # the first moment both would play
    devices: list[str] = field(default_factory=list)
    first: int | None = None  # the order set, if any: this one goes first
    shift_s: int = 0

    def as_json(self, titles: dict[int, dict[str, Any]]) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "bulletins": [titles[self.own], titles[self.other]],
            "own": self.own,
            "other": self.other,
            "at": self.at,
            "devices": self.devices,
            "first": self.first,
            "then": None if self.first is None else ({self.own, self.other} - {self.first}).pop(),
            "shift_s": self.shift_s,
        }


def find(central: Central, scope: Scope, unit: str | None = None) -> list[Collision]:
    """The collisions on the boxes the caller sees (of ``unit`` only, if given), by unit then time.

    A pair whose order is set is found where it was sent (and shown with its order).  Any other pair
    is looked at where the commune's orders have moved its bulletins: a bulletin moved to follow
    another can land on a third, and that collision is shown to be ordered in turn."""
    rows, durations = _scheduled(central)
    now = central.clock()
    known: dict[int, list[Span]] = {}
    with central.engine.connect() as conn:
        orders = conn.execute(select(db.bulletin_orders)).all()
    ordered = {(order.unit, frozenset((order.first_id, order.second_id))) for order in orders}
    moves = {order.unit: _moves(orders, order.unit) for order in orders}  # per commune, once

    def spans(bid: int, on: str | None = None) -> list[Span]:  # expanded only for the boxes asked about
        if bid not in known:
            known[bid] = _spans(central, rows[bid], durations, now)
        return known[bid] if on is None else _moved(known[bid], moves.get(on, {}).get(bid, 0))

    found: dict[tuple[str, int, int], Collision] = {}
    for device, box_unit, ids in _boxes(central, scope, unit):
        own = [bid for bid in ids if rows[bid].unit == box_unit]
        others = [bid for bid in ids if rows[bid].unit != box_unit]
        for mine in own:
            for other in others:
                key = (box_unit, mine, other)
                if key not in found:
                    on = None if (box_unit, frozenset((mine, other))) in ordered else box_unit
                    pairs = overlaps(spans(mine, on), spans(other, on))
                    if not pairs:
                        continue
                    at = min(max(a[0], b[0]) for a, b in pairs)
                    found[key] = Collision(box_unit, mine, other, at)
                found[key].devices.append(device)
    _orders(orders, found)
    return sorted(found.values(), key=lambda hit: (hit.unit, hit.at, hit.own, hit.other))


def listing(central: Central, scope: Scope, unit: str | None = None) -> list[dict[str, Any]]:
    """:func:`find` as the API and the pages show it, each bulletin with its title and sender."""
    collisions = find(central, scope, unit)
    ids = {bid for hit in collisions for bid in (hit.own, hit.other)}
    with central.engine.connect() as conn:
        rows = conn.execute(select(db.bulletins).where(db.bulletins.c.id.in_(ids))).all() if ids else []
    titles = {
        row.id: {
            "id": row.id,
            "title": row.title,
            "unit": row.unit,
            "created_by": row.created_by,
            "at": row.at.isoformat() if row.at else None,
            "rrule": row.rrule,
            "dtstart": row.dtstart,
        }
        for row in rows
    }
    return [hit.as_json(titles) for hit in collisions]


def set_order(central: Central, scope: Scope, unit: str, first: int, then: int) -> dict[str, Any]:
    """The commune's order for two colliding bulletins: ``first`` keeps its time, ``then`` follows
    its end on the commune's boxes (new manifests); Forbidden or BulletinError with the reason."""
    scope.require_writer("set the order of priority bulletins")
    if scope.user.role != "admin" and scope.user.unit != unit:
        name = scope.units[unit].name if unit in scope.units else unit
        raise Forbidden(f"only the operator of {name} sets the order of its colliding priority bulletins")
    hit = next((hit for hit in find(central, scope, unit) if {hit.own, hit.other} == {first, then}), None)
    if hit is None:
        raise BulletinError([f"bulletins {first} and {then} do not collide on the boxes of {unit}"])
    shift = _shift(central, unit, first, then)
    now = central.clock()
    pair = or_(
        (db.bulletin_orders.c.first_id == first) & (db.bulletin_orders.c.second_id == then),
        (db.bulletin_orders.c.first_id == then) & (db.bulletin_orders.c.second_id == first),
    )
    with central.engine.begin() as conn:
        conn.execute(delete(db.bulletin_orders).where(db.bulletin_orders.c.unit == unit, pair))
        conn.execute(
            insert(db.bulletin_orders).values(
                unit=unit,
                first_id=first,
                second_id=then,
                shift_s=shift,
                decided_by=scope.user.name,
                decided_at=now,
            )
        )
    versions = manifests.rebuild(central, hit.devices)
    registry.record_audit(
        central.engine,
        scope.user.name,
        "bulletin.order",
        f"unit {unit}",
        {"first": first, "then": then, "shift_s": shift, "devices": hit.devices},
    )
    return {"unit": unit, "first": first, "then": then, "shift_s": shift, "manifests": versions}


def overlaps(one: list[Span], other: list[Span]) -> list[tuple[Span, Span]]:
    """Each pair of spans, one from each list, that share a moment (both lists sorted by start)."""
    found, start = [], 0
    for span in one:
        while start < len(other) and other[start][1] <= span[0]:
            start += 1
        for candidate in other[start:]:
            if candidate[0] >= span[1]:
                break
            found.append((span, candidate))
    return found


def _moves(orders: Iterable[Any], unit: str | None, leaving: frozenset[int] = frozenset()) -> dict[int, int]:
    """Seconds each bulletin is moved on ``unit``'s boxes by its orders (the largest, as the
    manifests have it: central.manifests), but for the order of the pair ``leaving``."""
    moves: dict[int, int] = {}
    for order in orders:
        if order.unit == unit and frozenset((order.first_id, order.second_id)) != leaving:
            moves[order.second_id] = max(moves.get(order.second_id, 0), order.shift_s)
    return moves


def _moved(spans: list[Span], seconds: int) -> list[Span]:
    shift = timedelta(seconds=seconds)
    return [(start + shift, end + shift) for start, end in spans] if seconds else spans


def _shift(central: Central, unit: str, first: int, then: int) -> int:
    """Seconds ``then`` must start later to follow ``first``'s end, the same at every collision;
    ``first`` where the commune's other orders have already moved it."""
    rows, durations = _scheduled(central)
    now = central.clock()
    with central.engine.connect() as conn:
        orders = conn.execute(select(db.bulletin_orders)).all()
    ahead = _moved(_spans(central, rows[first], durations, now),
                   _moves(orders, unit, frozenset((first, then))).get(first, 0))  # fmt: skip
    behind = _spans(central, rows[then], durations, now)
    pairs = overlaps(ahead, behind)
    shifts = {math.ceil((a[1] - b[0]).total_seconds()) for a, b in pairs}
    colliding = {b for _a, b in pairs}
    if len(shifts) != 1 or len(colliding) != len(behind):
        raise BulletinError(
            [
                f"bulletin {then} repeats where bulletin {first} does not collide with it the same way each "
                "time, so it cannot simply follow it: change one of their times instead"
            ]
        )
    shift = shifts.pop()
    spec = manifests.shifted(manifests.row_spec(rows[then], rows[then].audio_sha256), shift)
    _items, findings = parse_items({"items": [spec]}, central.config.box_timezone)
    if findings:
        raise BulletinError([f"bulletin {then} moved {shift} s later: {finding}" for finding in findings])
    return shift


def _scheduled(central: Central) -> tuple[dict[int, Any], dict[str, float]]:
    """Priority bulletins scheduled for some box, by id, and the audio's lengths."""
    query = select(db.bulletins).where(
        db.bulletins.c.level == "priority",
        db.bulletins.c.id.in_(
            select(db.bulletin_targets.c.bulletin_id).where(db.bulletin_targets.c.status == "scheduled")
        ),
    )
    with central.engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(query)}
        durations = {
            row.sha256: float(row.duration_s)
            for row in conn.execute(select(db.audio.c.sha256, db.audio.c.duration_s))
        }
    return rows, durations


def _spans(central: Central, row: Any, durations: dict[str, float], now: datetime) -> list[Span]:
    """When a bulletin plays within the horizon, by the boxes' own reading of the item."""
    items, findings = parse_items(
        {"items": [manifests.row_spec(row, row.audio_sha256)]}, central.config.box_timezone
    )
    if findings:  # checked when it was made
        return []
    length = timedelta(seconds=durations.get(row.audio_sha256, 0.0))
    return [
        (occ.start, occ.start + length)
        for occ in expand(items, central.config.box_timezone, now, now + HORIZON)
    ]


def _boxes(central: Central, scope: Scope, unit: str | None) -> Iterable[tuple[str, str, list[int]]]:
    """``(box, its unit, its scheduled priority bulletins)`` for each box the caller sees."""
    query = (
        select(db.devices.c.id, db.devices.c.unit, db.bulletin_targets.c.bulletin_id)
        .join(db.bulletin_targets, db.bulletin_targets.c.device_id == db.devices.c.id)
        .join(db.bulletins, db.bulletins.c.id == db.bulletin_targets.c.bulletin_id)
        .where(
            db.bulletin_targets.c.status == "scheduled",
            db.bulletins.c.level == "priority",
            db.devices.c.removed_at.is_(None),
        )
        .order_by(db.devices.c.id)
    )
    boxes: dict[str, tuple[str, list[int]]] = {}
    with central.engine.connect() as conn:
        for row in conn.execute(query):
            if scope.sees_unit(row.unit) and (unit is None or row.unit == unit):
                boxes.setdefault(row.id, (row.unit, []))[1].append(row.bulletin_id)
    return [(device, box_unit, ids) for device, (box_unit, ids) in boxes.items()]


def _orders(orders: Iterable[Any], found: dict[tuple[str, int, int], Collision]) -> None:
    """Each collision's order, if set, from the ``bulletin_orders`` rows already read."""
    for order in orders:
        for key in (
            (order.unit, order.first_id, order.second_id),
            (order.unit, order.second_id, order.first_id),
        ):
            if key in found:
                found[key].first, found[key].shift_s = order.first_id, order.shift_s
