"""What an upstream system reads besides boxes and reports: the unit tree and the audio library.

Both answer any signed-in user (a read-only ``upstream`` token included), each within its reach.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from central import db, registry, upstream
from central.auth import CentralDep, ScopeDep
from protocol.json_wire import format_time

router = APIRouter(prefix="/api/v1", tags=["registry"])


@router.get("/units")
def units(central: CentralDep, scope: ScopeDep) -> list[dict[str, Any]]:
    """Units the caller reaches (a tree whose levels are data), each with its parent and box count."""
    query = select(db.devices.c.unit, func.count()).where(db.devices.c.removed_at.is_(None))
    query = query.group_by(db.devices.c.unit)
    with central.engine.connect() as conn:
        boxes = {row[0]: int(row[1]) for row in conn.execute(query)}
    shown = [unit for unit in scope.units.values() if scope.sees_unit(unit.id)]
    return [{"id": unit.id, "name": unit.name, "level": unit.level, "parent": unit.parent,
             "path": list(reversed(registry.ancestry(scope.units, unit.id))), "boxes": boxes.get(unit.id, 0)}
            for unit in sorted(shown, key=lambda unit: unit.id)]  # fmt: skip


@router.get("/library")
def library(central: CentralDep, scope: ScopeDep) -> list[dict[str, Any]]:
    """The audio library, newest first: uploads, speech and what upstream feeds brought (with their feed)."""
    with central.engine.connect() as conn:
        rows = conn.execute(select(db.audio).order_by(db.audio.c.created_at.desc()).limit(500)).all()
    feeds = {item["audio_sha256"]: item for item in upstream.imported(central.engine) if item["audio_sha256"]}
    return [{"sha256": row.sha256, "name": row.name, "mime": row.mime, "size": row.size,
             "duration_s": row.duration_s, "created_at": format_time(row.created_at),
             "created_by": row.created_by,
             "feed": feeds[row.sha256]["feed_url"] if row.sha256 in feeds else None}
            for row in rows]  # fmt: skip
