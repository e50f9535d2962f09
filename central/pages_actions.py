"""The pages that act: bulletin creation, a commune's schedule (offered bulletins accepted or not),
the emergency button (a confirmation page, then a signed command), a command's acks, and reports.

Each calls the same code as the API (central.bulletins, central.commands, central.reports), so a
page can do nothing the API would refuse, and says why when that code refuses.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import select
from starlette.datastructures import FormData, UploadFile

from central import bulletins, collisions, commands, db, registry, reports, upstream
from central.access import Forbidden, Scope
from central.audio_store import AudioRefused
from central.auth import CentralDep
from central.bulletins import BulletinInput
from central.commands import CommandError
from central.context import Central
from central.pages import redirect, render
from central.targets import BulletinError, target_devices
from central.tts import SpeechError
from central.web_session import BrowserDep, CsrfChecked, PageScope
from central.web_text import RRULE_PRESETS, translator

router = APIRouter(include_in_schema=False)
REFUSALS = (BulletinError, Forbidden, CommandError, AudioRefused, SpeechError)


def _problems(error: Exception) -> list[str]:
    return list(error.problems) if isinstance(error, BulletinError) else [str(error)]


def choices(central: Central, scope: Scope) -> dict[str, Any]:
    """What a form offers: the units and boxes the user sees, and the audio library."""

    def path(unit: registry.Unit) -> list[str]:  # a unit right under its parent, in a tree's order
        return [scope.units[up].name for up in reversed(registry.ancestry(scope.units, unit.id))]

    units = sorted((unit for unit in scope.units.values() if scope.sees_unit(unit.id)), key=path)
    query = select(db.devices.c.id, db.devices.c.unit).where(db.devices.c.removed_at.is_(None))
    query = query.order_by(db.devices.c.id)
    with central.engine.connect() as conn:
        devices = [row for row in conn.execute(query) if scope.sees_unit(row.unit)]
        library = conn.execute(select(db.audio).order_by(db.audio.c.created_at.desc()).limit(100)).all()
    depth = {unit.id: len(registry.ancestry(scope.units, unit.id)) - 1 for unit in units}
    return {"units": units, "depth": depth, "devices": devices, "library": library}


def _targets(form: FormData) -> dict[str, list[str]]:
    kind = "devices" if form.get("target_kind") == "devices" else "units"
    return {kind: [str(value) for value in form.getlist(kind)]}


async def _audio(central: Central, scope: Scope, form: FormData) -> tuple[str | None, str | None]:
    """``(audio_sha256, text)`` from the form: an upload stored as the API stores it, a library
    audio, or text to be spoken."""
    source = form.get("source")
    if source == "text":
        return None, str(form.get("text", "")).strip() or None
    if source == "upload":
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BulletinError(["choose an audio file to upload"])
        scope.require_writer("upload audio")

        def chunks() -> Any:
            while chunk := upload.file.read(1 << 16):
                yield chunk

        stored = central.audio.put(chunks(), name=upload.filename)
        bulletins.register_audio(central.engine, stored, upload.filename, scope.user.name, central.clock())
        return stored.sha256, None
    sha = str(form.get("audio", ""))
    return (sha or None), None


def _local(value: str, what: str, zone: ZoneInfo) -> datetime:
    """A form's date and time, on the boxes' wall clock (``devices.timezone``)."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=zone)
    except ValueError:
        raise BulletinError([f"{what}: expected a date and time"]) from None


def _timing(form: FormData, zone: ZoneInfo) -> dict[str, Any]:
    if form.get("timing") != "recurring":
        return {"at": _local(str(form.get("at", "")), "at", zone)}
    preset = str(form.get("rrule_preset", ""))
    rrule = str(form.get("rrule_custom", "")).strip() if preset == "custom" else preset
    start = _local(str(form.get("dtstart", "")), "dtstart", zone)
    until = str(form.get("valid_until", "")).strip() or None
    return {"rrule": rrule, "dtstart": start.strftime("%Y-%m-%d %H:%M"), "valid_until": until}


def _volume(form: FormData) -> int | None:
    text = str(form.get("volume", "")).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 100:
        raise BulletinError([f"volume {text[:10]!r}: expected 0 to 100"])
    return int(text)


# -- bulletins -------------------------------------------------------------------------------------


@router.get("/bulletins/new")
def bulletin_form(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
                  audio: str | None = None) -> Response:  # fmt: skip
    form = {"source": "library", "audio": audio} if audio else {}
    return render(request, browser, "bulletin_new.html", form=form, errors=[], presets=RRULE_PRESETS,
                  **choices(central, scope))  # fmt: skip


@router.get("/library")
def library(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope) -> Response:
    """The audio library: uploads, speech and the programmes upstream feeds brought."""
    feeds = {item["audio_sha256"]: item for item in upstream.imported(central.engine) if item["audio_sha256"]}
    names = {feed.url: feed.name for feed in upstream.feed_list(central.engine)}
    return render(request, browser, "library.html", library=choices(central, scope)["library"], feeds=feeds,
                  feed_names=names)  # fmt: skip


@router.post("/bulletins/new", dependencies=[CsrfChecked])
async def bulletin_create(request: Request, central: CentralDep, browser: BrowserDep,
                          scope: PageScope) -> Response:  # fmt: skip
    form = await request.form()
    try:
        sha, text = await _audio(central, scope, form)
        data = BulletinInput(title=str(form.get("title", "")).strip()[:300], level=str(form.get("level")),
                             targets=_targets(form), audio_sha256=sha, text=text, volume=_volume(form),
                             **_timing(form, central.config.box_timezone))  # fmt: skip
        if not data.title:
            raise BulletinError(["title: expected a title"])
        answer = bulletins.create(central, scope, data)
    except REFUSALS as error:
        values = {key: form.getlist(key) if key in ("units", "devices") else form.get(key) for key in form}
        values.pop("file", None)
        return render(request, browser, "bulletin_new.html", 422, form=values, errors=_problems(error),
                      presets=RRULE_PRESETS, **choices(central, scope))  # fmt: skip
    if "command" in answer:
        return redirect(f"/commands/{answer['command']}")
    return redirect(f"/schedule?created={answer['id']}")


# -- a commune's schedule --------------------------------------------------------------------------


@router.get("/schedule")
def schedule(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
             unit: str | None = None, created: int | None = None) -> Response:  # fmt: skip
    with central.engine.connect() as conn:
        in_service = select(db.devices.c.id, db.devices.c.unit).where(db.devices.c.removed_at.is_(None))
        boxes = {row.id: row.unit for row in conn.execute(in_service) if scope.sees_unit(row.unit)}
    places = sorted({box_unit for box_unit in boxes.values()}, key=lambda u: scope.units[u].name)
    chosen = unit if unit in places else (scope.user.unit if scope.user.unit in places else None)
    chosen = chosen or (places[0] if places else None)
    entries = []
    if chosen is not None:
        here = {box for box, box_unit in boxes.items() if box_unit == chosen}
        for entry in bulletins.listing(central.engine, scope):
            mine = {box: status for box, status in entry["targets"].items() if box in here}
            if mine:
                entries.append(entry | {"mine": mine, "offered": "offered" in mine.values()})
    clashes = collisions.listing(central, scope, chosen) if chosen is not None else []
    return render(request, browser, "schedule.html", places=places, chosen=chosen, entries=entries,
                  created=created, collisions=clashes)  # fmt: skip


@router.post("/schedule/order", dependencies=[CsrfChecked])
async def order(request: Request, central: CentralDep, scope: PageScope) -> Response:
    """The commune operator's choice of which colliding priority bulletin goes first."""
    form = await request.form()
    unit = str(form.get("unit", ""))
    try:
        first, then = int(str(form.get("first"))), int(str(form.get("then")))
    except ValueError:
        raise HTTPException(422, "first and then: expected bulletin numbers") from None
    try:
        collisions.set_order(central, scope, unit, first, then)
    except REFUSALS as error:
        raise HTTPException(
            403 if isinstance(error, Forbidden) else 422, "; ".join(_problems(error))
        ) from None
    return redirect(f"/schedule?unit={quote(unit)}")


@router.post("/schedule/{bulletin_id}/{decision}", dependencies=[CsrfChecked])
async def decide(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
                 bulletin_id: int, decision: str) -> Response:  # fmt: skip
    if decision not in ("accept", "decline"):
        raise HTTPException(404, "expected accept or decline")
    unit = str((await request.form()).get("unit", ""))
    try:
        bulletins.decide(central, scope, bulletin_id, accept=decision == "accept")
    except REFUSALS as error:
        raise HTTPException(403, "; ".join(_problems(error))) from None
    return redirect(f"/schedule?unit={quote(unit)}")


# -- the emergency button --------------------------------------------------------------------------


@router.get("/emergency")
def emergency_form(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
                   device: str | None = None) -> Response:  # fmt: skip
    form = {"target_kind": "devices", "devices": [device]} if device else {}
    return render(request, browser, "emergency.html", form=form, errors=[], **choices(central, scope))


@router.post("/emergency", dependencies=[CsrfChecked])
async def emergency_check(request: Request, central: CentralDep, browser: BrowserDep,
                          scope: PageScope) -> Response:  # fmt: skip
    """Step one: what would happen, to be confirmed; nothing is sent yet."""
    form = await request.form()
    targets = _targets(form)
    try:
        scope.require_writer("send commands")
        devices = target_devices(central.engine, scope.units, targets)
        scope.require_units(devices, "command")
        sha, text = await _audio(central, scope, form)
        if sha is None and text is None:
            raise BulletinError(["the message: write a text, choose an audio or upload one"])
        if sha is not None and central.audio.path_of(sha) is None:
            raise BulletinError([f"audio {sha[:64]}: no such audio in the library"])
        volume = _volume(form)
    except REFUSALS as error:
        values = {key: form.getlist(key) if key in ("units", "devices") else form.get(key) for key in form}
        values.pop("file", None)
        return render(request, browser, "emergency.html", 422, form=values, errors=_problems(error),
                      **choices(central, scope))  # fmt: skip
    names = [scope.units[name].name if name in scope.units else name for name in next(iter(targets.values()))]
    return render(request, browser, "emergency_confirm.html", targets=targets, names=names,
                  devices=sorted(devices), audio=sha, text=text, volume=volume)  # fmt: skip


@router.post("/emergency/confirm", dependencies=[CsrfChecked])
async def emergency_send(request: Request, central: CentralDep, browser: BrowserDep,
                         scope: PageScope) -> Response:  # fmt: skip
    """Step two, confirmed: an emergency bulletin with no time, sent at once as a signed command."""
    form = await request.form()
    t = translator(browser.lang)
    sha, text = (str(form.get("audio") or "") or None), (str(form.get("text") or "").strip() or None)
    try:
        title = f"{t('Emergency')} {central.clock().astimezone(central.config.box_timezone):%d/%m/%Y %H:%M}"
        data = BulletinInput(title=title, level="emergency", targets=_targets(form), audio_sha256=sha,
                             text=text, volume=_volume(form))  # fmt: skip
        answer = bulletins.create(central, scope, data)
    except REFUSALS as error:
        raise HTTPException(422, "; ".join(_problems(error))) from None
    return redirect(f"/commands/{answer['command']}")


@router.get("/commands/{command_id}")
def command(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
            command_id: str) -> Response:  # fmt: skip
    found = commands.status(central.engine, scope, command_id)
    if found is None:
        raise HTTPException(404, f"no command {command_id[:128]} for the boxes you see")
    return render(request, browser, "command.html", command=found, stoppable=found["type"] in STOPPABLE)


STOPPABLE = ("emergency", "play_now")  # what a stop calls back: an alarm sent by mistake, first of all


@router.post("/boxes/{device_id}/stop", dependencies=[CsrfChecked])
def box_stop(central: CentralDep, scope: PageScope, device_id: str) -> Response:
    """Stop what one box plays (a bulletin, an emergency, a play, FM for 30 minutes) and what it is
    still fetching to play: a signed ``stop`` to that box; its page shows the box's answer."""
    try:
        stop = commands.send(central, scope, "stop", {}, {"devices": [device_id]})
    except REFUSALS as error:
        code = 403 if isinstance(error, Forbidden) else 422
        raise HTTPException(code, "; ".join(_problems(error))) from None
    return redirect(f"/commands/{stop}")


@router.post("/commands/{command_id}/stop", dependencies=[CsrfChecked])
def command_stop(central: CentralDep, scope: PageScope, command_id: str) -> Response:
    """Stop, on the boxes a play or an emergency went to, what they play; a box still fetching its
    audio cancels it and never plays it (docs/PROTOCOL.md, ``stop``).  The stop goes to the same
    targets (one message per group), or, for an operator who sees only some of those boxes, to
    each of those."""
    found = commands.status(central.engine, scope, command_id)
    if found is None or found["type"] not in STOPPABLE:
        raise HTTPException(404, f"no play or emergency {command_id[:128]} for the boxes you see")
    try:
        scope.require_writer("send commands")
        try:
            stop = commands.send(central, scope, "stop", {}, found["targets"])
        except Forbidden:  # it reached boxes beyond this operator's units: stop the ones they see
            stop = commands.send(central, scope, "stop", {}, {"devices": sorted(found["acks"])})
    except REFUSALS as error:
        raise HTTPException(
            403 if isinstance(error, Forbidden) else 422, "; ".join(_problems(error))
        ) from None
    return redirect(f"/commands/{stop}")


# -- reports ---------------------------------------------------------------------------------------


def _period(central: Central, start: str | None, end: str | None) -> tuple[date, date]:
    today = central.clock().astimezone(central.config.box_timezone).date()
    try:
        return (date.fromisoformat(start) if start else today.replace(day=1),
                date.fromisoformat(end) if end else today)  # fmt: skip
    except ValueError:
        raise reports.ReportError("from and to: expected dates as YYYY-MM-DD") from None


@router.get("/reports")
def report_page(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
                start: str | None = None, end: str | None = None,
                group_by: str = "commune") -> Response:  # fmt: skip
    rows, error = [], None
    first = last = central.clock().astimezone(central.config.box_timezone).date()
    try:
        first, last = _period(central, start, end)
        rows = reports.broadcasts(
            central.engine, scope, first, last, group_by, central.clock(), central.config.box_timezone,
            kept_days=central.config.retention.playlog_days,
        )  # fmt: skip
    except reports.ReportError as refused:
        error = str(refused)
    return render(request, browser, "reports.html", rows=rows, error=error, start=first, end=last,
                  group_by=group_by, levels_held=reports.levels(scope.units))  # fmt: skip


@router.get("/reports/broadcasts.csv")
def report_csv(central: CentralDep, browser: BrowserDep, scope: PageScope, start: str | None = None,
               end: str | None = None, group_by: str = "commune") -> Response:  # fmt: skip
    try:
        first, last = _period(central, start, end)
        rows = reports.broadcasts(
            central.engine, scope, first, last, group_by, central.clock(), central.config.box_timezone,
            kept_days=central.config.retention.playlog_days,
        )  # fmt: skip
    except reports.ReportError as refused:
        raise HTTPException(422, str(refused)) from None
    name = f"bao-cao-phat-thanh-{first.isoformat()}-{last.isoformat()}-{group_by}.csv"
    return Response(reports.as_csv(rows, browser.lang), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
