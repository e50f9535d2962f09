"""The REST API under ``/api/v1`` (OpenAPI at ``/openapi.json``): audio, bulletins, commands, boxes,
play logs, and what boxes fetch (their manifest and audio, which need no token: both are checked
by the box itself, the manifest by its signature and the audio by its SHA-256)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from central import bulletins, collisions, commands, db, manifests, registry
from central.access import Forbidden
from central.audio_store import AudioRefused
from central.auth import CentralDep, ScopeDep
from central.ingest import service_status
from protocol.json_wire import format_time

router = APIRouter(prefix="/api/v1")
CHUNK = 1 << 16


class Targets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[str] | None = None
    communes: list[str] | None = None
    districts: list[str] | None = None
    units: list[str] | None = None

    def plain(self) -> dict[str, list[str]]:
        return {key: value for key, value in self.model_dump().items() if value}


class BulletinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=300)
    audio_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    text: str | None = Field(default=None, min_length=1, max_length=20_000)
    level: Literal["normal", "priority", "emergency"] = "normal"
    targets: Targets
    at: AwareDatetime | None = None
    rrule: str | None = Field(default=None, max_length=500)
    dtstart: str | None = Field(default=None, max_length=40)
    valid_from: str | None = Field(default=None, max_length=40)
    valid_until: str | None = Field(default=None, max_length=40)
    volume: int | None = Field(default=None, ge=0, le=100)
    zones: list[str] | None = None


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # the command's own fields, checked by the protocol
    type: str
    targets: Targets


# -- audio -----------------------------------------------------------------------------------------


@router.post("/audio", status_code=201, tags=["audio"])
def upload_audio(central: CentralDep, scope: ScopeDep, file: UploadFile, request: Request) -> dict[str, Any]:
    """Store an MP3, WAV or OGG file (multipart field ``file``); answers its sha256 and length."""
    scope.require_writer("upload audio")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > central.config.audio_max_bytes + 64 * 1024:
        raise AudioRefused(f"larger than {central.config.audio_max_bytes // (1024 * 1024)} MB: refused", 413)

    def chunks() -> Any:
        while chunk := file.file.read(CHUNK):
            yield chunk

    stored = central.audio.put(chunks(), name=file.filename or "upload")
    bulletins.register_audio(
        central.engine, stored, file.filename or "upload", scope.user.name, central.clock()
    )
    return {
        "sha256": stored.sha256,
        "duration_s": stored.duration_s,
        "mime": stored.mime,
        "size": stored.size,
    }


@router.get("/audio", tags=["audio"])
def list_audio(central: CentralDep, scope: ScopeDep,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:  # fmt: skip
    """The audio library (uploads and speech), newest first."""
    query = select(db.audio).order_by(db.audio.c.created_at.desc()).limit(limit)
    with central.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"sha256": row.sha256, "name": row.name, "mime": row.mime, "size": row.size,
             "duration_s": row.duration_s, "created_by": row.created_by,
             "created_at": format_time(row.created_at)} for row in rows]  # fmt: skip


@router.get("/audio/{sha256}", tags=["boxes"], response_class=FileResponse)
def get_audio(central: CentralDep, sha256: str) -> FileResponse:
    """The audio by its sha256, with HTTP Range (a box resumes a cut download)."""
    path = central.audio.path_of(sha256)
    if path is None:
        raise HTTPException(404, f"no audio {sha256[:64]}")
    with central.engine.connect() as conn:
        mime = conn.execute(select(db.audio.c.mime).where(db.audio.c.sha256 == sha256)).scalar_one_or_none()
    return FileResponse(path, media_type=mime or "application/octet-stream")


# -- bulletins -------------------------------------------------------------------------------------


@router.post("/bulletins", status_code=201, tags=["bulletins"])
def create_bulletin(central: CentralDep, scope: ScopeDep, body: BulletinBody) -> dict[str, Any]:
    """A bulletin for boxes, or the units whose boxes; see docs for who decides at each level."""
    data = bulletins.BulletinInput(
        **{**body.model_dump(exclude={"targets"}), "targets": body.targets.plain()}
    )
    return bulletins.create(central, scope, data)


@router.get("/bulletins", tags=["bulletins"])
def list_bulletins(central: CentralDep, scope: ScopeDep,
                   status: Annotated[str | None, Query(pattern="^(offered|scheduled|declined|sent)$")] = None
                   ) -> list[dict[str, Any]]:  # fmt: skip
    """Bulletins for the boxes the user sees (``status=offered``: waiting for the commune)."""
    return bulletins.listing(central.engine, scope, status)


@router.post("/bulletins/{bulletin_id}/accept", tags=["bulletins"])
def accept_bulletin(central: CentralDep, scope: ScopeDep, bulletin_id: int) -> dict[str, Any]:
    return bulletins.decide(central, scope, bulletin_id, accept=True)


@router.post("/bulletins/{bulletin_id}/decline", tags=["bulletins"])
def decline_bulletin(central: CentralDep, scope: ScopeDep, bulletin_id: int) -> dict[str, Any]:
    return bulletins.decide(central, scope, bulletin_id, accept=False)


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str = Field(max_length=64, description="the commune whose boxes both bulletins reach")
    first: int = Field(description="the bulletin that keeps its time")
    then: int = Field(description="the bulletin that starts as the first ends")


@router.get("/collisions", tags=["bulletins"])
def list_collisions(central: CentralDep, scope: ScopeDep, unit: str | None = None) -> list[dict[str, Any]]:
    """Priority bulletins of a commune colliding with another unit's on its boxes (next 31 days),
    each with the order set, if any (Circular 39: the commune's operator sets it)."""
    return collisions.listing(central, scope, unit)


@router.post("/collisions/order", tags=["bulletins"])
def order_collision(central: CentralDep, scope: ScopeDep, body: OrderBody) -> dict[str, Any]:
    """The commune's order for two colliding priority bulletins: ``first`` keeps its time, ``then``
    starts as it ends, in the manifests of the commune's boxes that have both."""
    return collisions.set_order(central, scope, body.unit, body.first, body.then)


# -- commands --------------------------------------------------------------------------------------


@router.post("/commands", status_code=201, tags=["commands"])
def send_command(central: CentralDep, scope: ScopeDep, body: CommandBody) -> dict[str, str]:
    """Sign and send a protocol command (``type``: play_now, emergency, stop, ...) with its fields."""
    fields = dict(body.model_extra or {})
    ident = commands.send(central, scope, body.type, fields, body.targets.plain())
    return {"id": ident}


@router.get("/commands/{command_id}", tags=["commands"])
def command_status(central: CentralDep, scope: ScopeDep, command_id: str) -> dict[str, Any]:
    """The command and each target box's latest ack."""
    found = commands.status(central.engine, scope, command_id)
    if found is None:
        raise HTTPException(404, f"no command {command_id[:128]} for the boxes you see")
    return found


# -- boxes -----------------------------------------------------------------------------------------


def _device_json(central: CentralDep, row: Any, *, full: bool) -> dict[str, Any]:
    now = central.clock()
    value: dict[str, Any] = {
        "id": row.id, "unit": row.unit, "groups": row.groups,
        "online": service_status(row, now, central.config.offline_after) == "online",
        "removed_at": format_time(row.removed_at) if row.removed_at else None,  # out of service since
        "last_seen": format_time(row.last_seen) if row.last_seen else None,
        "playing": (row.state or {}).get("playing"),
        # the manifest version sent and the one the box says is in force: unequal, it has not taken it yet
        "manifest": {"sent": str(row.version) if row.version is not None else None,
                     "in_force": (row.state or {}).get("schedules", {}).get("central")},
    }  # fmt: skip
    if full:
        value |= {"session": row.session, "state": row.state, "telemetry": row.telemetry,
                  "telemetry_at": format_time(row.telemetry_at) if row.telemetry_at else None}  # fmt: skip
    return value


@router.get("/units", tags=["boxes"])
def list_units(central: CentralDep, scope: ScopeDep) -> list[dict[str, Any]]:
    """The units the user sees (its own and those below it): id, parent, name, level."""
    return [
        {"id": unit.id, "parent": unit.parent, "name": unit.name, "level": unit.level}
        for unit in sorted(scope.units.values(), key=lambda unit: unit.id)
        if scope.sees_unit(unit.id)
    ]


def _devices_query() -> Any:
    return select(db.devices, db.manifests.c.version).outerjoin(
        db.manifests, db.manifests.c.device_id == db.devices.c.id
    )


@router.get("/devices", tags=["boxes"])
def list_devices(central: CentralDep, scope: ScopeDep) -> list[dict[str, Any]]:
    with central.engine.connect() as conn:
        rows = conn.execute(_devices_query().order_by(db.devices.c.id)).all()
    return [_device_json(central, row, full=False) for row in rows if scope.sees_unit(row.unit)]


@router.get("/devices/{device_id}", tags=["boxes"])
def get_device(central: CentralDep, scope: ScopeDep, device_id: str) -> dict[str, Any]:
    with central.engine.connect() as conn:
        row = conn.execute(_devices_query().where(db.devices.c.id == device_id)).first()
    if row is None or not scope.sees_unit(row.unit):
        raise HTTPException(404, f"no box {device_id[:64]} among the boxes you see")
    return _device_json(central, row, full=True)


@router.get("/devices/{device_id}/manifest", tags=["boxes"], response_class=Response)
def get_manifest(central: CentralDep, device_id: str,
                 if_none_match: Annotated[str | None, Header()] = None) -> Response:  # fmt: skip
    """The box's signed manifest (``application/jwt``) with its ETag; 304 when it has it already."""
    if registry.removed_at(central.engine, device_id) is not None:
        raise HTTPException(410, f"box {device_id[:64]} was removed from service")
    found = manifests.manifest_of(central.engine, device_id)
    if found is None:
        raise HTTPException(404, f"no manifest for {device_id[:64]} yet")
    token, etag = found
    if if_none_match is not None and etag in [tag.strip() for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(token, media_type="application/jwt", headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.get("/playlogs", tags=["boxes"])
def list_playlogs(central: CentralDep, scope: ScopeDep, device: str | None = None,
                  since: AwareDatetime | None = None, until: AwareDatetime | None = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:  # fmt: skip
    """Play-log rows (one per occurrence, its latest record), newest scheduled first."""
    query = (
        select(db.playlogs, db.devices.c.unit)
        .join(db.devices, db.devices.c.id == db.playlogs.c.device_id)
        .order_by(db.playlogs.c.scheduled_start.desc())
        .limit(limit)
    )
    if device is not None:
        query = query.where(db.playlogs.c.device_id == device)
    if since is not None:
        query = query.where(db.playlogs.c.scheduled_start >= since)
    if until is not None:
        query = query.where(db.playlogs.c.scheduled_start < until)
    with central.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_playlog_json(row) for row in rows if scope.sees_unit(row.unit)]


def _playlog_json(row: Any) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return format_time(value) if value is not None else None

    return {"device_id": row.device_id, "key": row.key, "item_id": row.item_id, "audio": row.audio,
            "level": row.level, "zones": row.zones, "scheduled_start": when(row.scheduled_start),
            "actual_start": when(row.actual_start), "ended": when(row.ended), "outcome": row.outcome,
            "reason": row.reason, "origin": row.origin}  # fmt: skip


# -- audit -----------------------------------------------------------------------------------------


@router.get("/audit", tags=["audit"])
def audit_log(central: CentralDep, scope: ScopeDep,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[dict[str, Any]]:  # fmt: skip
    """Who did what, when: logins, bulletins, decisions, commands (admins only), newest first."""
    if scope.user.role != "admin":
        raise Forbidden(f"{scope.user.name} is a {scope.user.role}: only an admin reads the audit log")
    rows = registry.audit_log(central.engine, limit)
    return [row | {"at": format_time(row["at"])} for row in rows]
