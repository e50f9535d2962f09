"""Bulletins: what operators schedule for boxes, and who decides (Circular 39's three levels).

- ``normal``: from the box's own unit (or an admin) it is scheduled at once; from a higher unit it
  lands in the commune's list of offered bulletins, and the commune's operator accepts (scheduled)
  or declines it (:func:`decide`).
- ``priority``: scheduled by its sender.
- ``emergency``: with no ``at`` it plays at once, as an ``emergency`` command to the boxes; with an
  ``at`` it is scheduled like a priority one, and pre-empts what plays then.

Each item is checked by the scheduler's own reader (the one the boxes use) before anything is
stored, so a bulletin the boxes would refuse is refused here, with every problem named.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select, update

from central import commands, db, manifests, registry
from central.access import Forbidden, Scope
from central.audio_store import StoredAudio
from central.context import Central
from central.targets import BulletinError, target_devices
from scheduler.items import parse_items

logger = logging.getLogger(__name__)

LEVELS = ("normal", "priority", "emergency")


@dataclass(frozen=True)
class BulletinInput:
    title: str
    level: str
    targets: dict[str, list[str]]
    audio_sha256: str | None = None
    text: str | None = None
    at: datetime | None = None
    rrule: str | None = None
    dtstart: str | None = None
    valid_from: str | None = None
    valid_until: str | None = None
    volume: int | None = None
    zones: list[str] | None = None


def _check_item(data: BulletinInput, sha256: str, timezone: ZoneInfo) -> None:
    """The bulletin as the boxes will read it, checked by their own reader (naive dtstart and dates
    are the box's local time: ``devices.timezone``)."""
    spec = manifests.item_spec(0, dataclasses.asdict(data), sha256)
    _items, findings = parse_items({"items": [spec]}, timezone)
    if findings:
        raise BulletinError([str(finding).replace("items[0].", "") for finding in findings])


def _audio(central: Central, data: BulletinInput, user: str) -> str:
    if (data.audio_sha256 is None) == (data.text is None):
        raise BulletinError(["expected exactly one of audio_sha256 and text"])
    if data.audio_sha256 is not None:
        if central.audio.path_of(data.audio_sha256) is None:
            raise BulletinError(
                [f"audio_sha256 {data.audio_sha256}: no such audio: upload it first (POST /audio)"]
            )
        return data.audio_sha256
    assert data.text is not None
    with tempfile.TemporaryDirectory(dir=central.audio.partial) as scratch:
        wav = Path(scratch) / "speech.wav"
        central.speech.synthesize(data.text, wav)
        stored = central.audio.put(_chunks(wav), name="speech")
    register_audio(central.engine, stored, "tts", user, central.clock())
    return stored.sha256


def _chunks(path: Path) -> Any:
    with path.open("rb") as source:
        while chunk := source.read(1 << 16):
            yield chunk


def register_audio(engine: Engine, stored: StoredAudio, name: str, user: str, at: datetime) -> None:
    row = {"sha256": stored.sha256, "mime": stored.mime, "size": stored.size, "duration_s": stored.duration_s,
           "name": name[:255], "created_at": at, "created_by": user}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(engine, db.audio, ["sha256"]), row)


def _status(scope: Scope, level: str, unit: str) -> str:
    """Who decides: a normal bulletin from above the box's own unit waits for the commune's operator."""
    if level != "normal" or scope.user.role == "admin" or scope.user.unit == unit:
        return "scheduled"
    return "offered"


def create(central: Central, scope: Scope, data: BulletinInput) -> dict[str, Any]:
    """Store a bulletin for its boxes, then schedule it (new manifests) or, an emergency with no time,
    send it at once; what happened to each box."""
    scope.require_writer("create bulletins")
    if data.level not in LEVELS:
        raise BulletinError([f"level {data.level!r}: expected one of {', '.join(LEVELS)}"])
    devices = target_devices(central.engine, scope.units, data.targets)
    scope.require_units(devices, "send bulletins to")
    at_once = data.level == "emergency" and data.at is None and data.rrule is None
    if not at_once:
        _check_item(
            data, "0" * 64, central.config.box_timezone
        )  # before any speech is synthesized: a bad time costs nothing
    sha256 = _audio(central, data, scope.user.name)
    statuses = {
        device: "sent" if at_once else _status(scope, data.level, unit) for device, unit in devices.items()
    }
    bulletin_id = _store(central, scope, data, sha256, statuses)
    answer: dict[str, Any] = {"id": bulletin_id, "audio_sha256": sha256, "targets": statuses}
    if at_once:
        fields: dict[str, Any] = {"audio": {"sha256": sha256, "url": central.audio_url(sha256)}}
        fields |= {key: value for key, value in (("zones", data.zones), ("volume", data.volume)) if value}
        answer["command"] = commands.send(central, scope, "emergency", fields, data.targets)
    else:
        scheduled = [device for device, status in statuses.items() if status == "scheduled"]
        answer["manifests"] = manifests.rebuild(central, scheduled)
    registry.record_audit(central.engine, scope.user.name, "bulletin.create", f"bulletin {bulletin_id}",
                          {"title": data.title, "level": data.level, "targets": data.targets})  # fmt: skip
    return answer


def _store(central: Central, scope: Scope, data: BulletinInput, sha256: str, statuses: dict[str, str]) -> int:
    values = dataclasses.asdict(data) | {"audio_sha256": sha256, "unit": scope.user.unit}
    values |= {"created_by": scope.user.name, "created_at": central.clock()}
    targets = [{"device_id": device, "status": status} for device, status in statuses.items()]
    with central.engine.begin() as conn:
        bulletin_id = int(
            conn.execute(insert(db.bulletins).values(**values).returning(db.bulletins.c.id)).scalar_one()
        )
        conn.execute(insert(db.bulletin_targets), [row | {"bulletin_id": bulletin_id} for row in targets])
    return bulletin_id


def decide(central: Central, scope: Scope, bulletin_id: int, accept: bool) -> dict[str, Any]:
    """A commune operator accepts (schedules) or declines an offered bulletin for its own boxes."""
    scope.require_writer("accept bulletins")
    query = (
        select(db.bulletin_targets.c.device_id, db.devices.c.unit)
        .join(db.devices, db.devices.c.id == db.bulletin_targets.c.device_id)
        .where(
            db.bulletin_targets.c.bulletin_id == bulletin_id,
            db.bulletin_targets.c.status == "offered",
            db.devices.c.removed_at.is_(None),
        )  # a box removed from service takes nothing new
    )
    with central.engine.connect() as conn:
        offered = {row.device_id: row.unit for row in conn.execute(query)}
    mine = scope.visible(offered.items())
    if not mine:
        raise Forbidden(f"bulletin {bulletin_id} offers nothing to the boxes {scope.user.name} may schedule")
    status = "scheduled" if accept else "declined"
    with central.engine.begin() as conn:
        conn.execute(update(db.bulletin_targets).where(
            db.bulletin_targets.c.bulletin_id == bulletin_id, db.bulletin_targets.c.device_id.in_(mine)
        ).values(status=status, decided_by=scope.user.name, decided_at=central.clock()))  # fmt: skip
    versions = manifests.rebuild(central, mine) if accept else {}
    registry.record_audit(central.engine, scope.user.name, f"bulletin.{'accept' if accept else 'decline'}",
                          f"bulletin {bulletin_id}", {"devices": mine})  # fmt: skip
    return {"id": bulletin_id, "status": status, "devices": mine, "manifests": versions}


def listing(engine: Engine, scope: Scope, status: str | None = None) -> list[dict[str, Any]]:
    """Bulletins with at least one visible box, each with its boxes' statuses."""
    query = (
        select(
            db.bulletins,
            db.bulletin_targets.c.device_id,
            db.bulletin_targets.c.status,
            db.devices.c.unit.label("box_unit"),
        )
        .join(db.bulletin_targets, db.bulletin_targets.c.bulletin_id == db.bulletins.c.id)
        .join(db.devices, db.devices.c.id == db.bulletin_targets.c.device_id)
        .order_by(db.bulletins.c.id.desc())
    )
    if status is not None:
        query = query.where(db.bulletin_targets.c.status == status)
    found: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            if not scope.sees_unit(row.box_unit):
                continue
            entry = found.setdefault(row.id, {
                "id": row.id, "title": row.title, "level": row.level, "audio_sha256": row.audio_sha256,
                "at": row.at, "rrule": row.rrule, "dtstart": row.dtstart, "created_by": row.created_by,
                "created_at": row.created_at, "targets": {},
            })  # fmt: skip
            entry["targets"][row.device_id] = row.status
    return list(found.values())
