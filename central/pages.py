"""The operators' web pages, server-rendered with Jinja2 (Vietnamese; English with ``?lang=en``):
sign-in, the list of boxes and a box's page.  Bulletins, the schedule, the emergency button and
reports are in central.pages_actions; both routers and their error pages are installed by
:func:`install`, the one line central.app needs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from central import db, registry, web_session
from central.auth import CentralDep, WrongPassword, address_of, authenticate
from central.context import Central
from central.ingest import service_status
from central.login_throttle import Throttled
from central.web_session import Browser, BrowserDep, CsrfChecked, PageScope, SignInNeeded
from central.web_text import LEVEL_NAMES, translator

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


@pass_context
def local_time(context: Context, value: datetime | None) -> str:
    """A moment on the boxes' wall clock (``devices.timezone`` of the server rendering the page; a
    macro that shows times must be imported ``with context`` to see the request)."""
    if value is None:
        return "—"
    central: Central = context["request"].app.state.central
    return value.astimezone(central.config.box_timezone).strftime("%d/%m/%Y %H:%M:%S")


templates.env.filters["local"] = local_time


def secure(central: Central) -> bool:
    return central.config.public_url.startswith("https://")


def render(request: Request, browser: Browser, name: str, http_status: int = 200,
           **context: Any) -> HTMLResponse:  # fmt: skip
    """A page in the browser's language, with what every page shows (user, CSRF field, navigation)."""
    central: Central = request.app.state.central
    t = translator(browser.lang)
    page = templates.TemplateResponse(request, name, {
        "t": t, "lang": browser.lang, "csrf": browser.csrf, "scope": browser.scope, "levels": LEVEL_NAMES,
        "user": browser.scope.user if browser.scope else None, "path": request.url.path,
        "zone": central.config.box_timezone.key,
        **context}, status_code=http_status)  # fmt: skip
    web_session.remember(page, browser, secure(central))
    return page


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- sign-in ---------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, browser: BrowserDep, next: str = "/boxes") -> Response:
    return render(request, browser, "login.html", next=_local_path(next), error=None)


@router.post("/login", dependencies=[CsrfChecked])
async def login(request: Request, central: CentralDep, browser: BrowserDep) -> Response:
    form = await request.form()
    name, password = str(form.get("username", ""))[:128], str(form.get("password", ""))
    target = _local_path(str(form.get("next", "/boxes")))
    t = translator(browser.lang)
    try:
        user = authenticate(central, name, password, address_of(request), "web")
    except WrongPassword:
        return render(request, browser, "login.html", 401, next=target,
                      error=t("Wrong user name or password."))  # fmt: skip
    except Throttled as refused:
        page = render(request, browser, "login.html", 429, next=target,
                      error=t("login.throttled").format(
                          seconds=refused.wait_s))  # fmt: skip
        page.headers["Retry-After"] = str(refused.wait_s)
        return page
    response = redirect(target)
    web_session.sign_in(central, response, user, secure(central))
    return web_session.remember(response, browser, secure(central))


def _local_path(url: str) -> str:
    """Only a path on this site (``/boxes``), never another site, after signing in."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/boxes"


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, central: CentralDep) -> Response:
    response = redirect("/login")
    web_session.sign_out(central, request, response)
    return response


@router.get("/")
def home() -> Response:
    return redirect("/boxes")


@router.get("/static/style.css")
def style() -> FileResponse:
    return FileResponse(HERE / "static" / "style.css", media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip


# -- boxes -----------------------------------------------------------------------------------------


def box_status(central: Central, row: Any) -> str:
    """``removed`` (from service), ``playing``, ``online`` or ``offline``: offline whatever it said once
    it is silent too long."""
    status = service_status(row, central.clock(), central.config.offline_after)
    return "playing" if status == "online" and (row.state or {}).get("playing") else status


@router.get("/boxes")
def boxes(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope) -> Response:
    with central.engine.connect() as conn:
        rows = conn.execute(select(db.devices).order_by(db.devices.c.unit, db.devices.c.id)).all()
    shown = [{"id": row.id, "unit": scope.units[row.unit].name if row.unit in scope.units else row.unit,
              "status": box_status(central, row), "last_seen": row.last_seen,
              "playing": (row.state or {}).get("playing")}
             for row in rows if scope.sees_unit(row.unit)]  # fmt: skip
    counts = {status: sum(1 for box in shown if box["status"] == status)
              for status in ("online", "playing", "offline")}  # fmt: skip
    return render(request, browser, "boxes.html", boxes=shown, counts=counts)


@router.get("/boxes/{device_id}")
def box(request: Request, central: CentralDep, browser: BrowserDep, scope: PageScope,
        device_id: str) -> Response:  # fmt: skip
    with central.engine.connect() as conn:
        row = conn.execute(select(db.devices).where(db.devices.c.id == device_id)).first()
        if row is None or not scope.sees_unit(row.unit):
            raise HTTPException(404, f"no box {device_id[:64]} among the boxes you see")
        logs = conn.execute(select(db.playlogs).where(db.playlogs.c.device_id == device_id)
                            .order_by(db.playlogs.c.scheduled_start.desc()).limit(20)).all()  # fmt: skip
        events = conn.execute(select(db.records).where(
            db.records.c.device_id == device_id, db.records.c.stream == "events"
        ).order_by(db.records.c.seq.desc()).limit(20)).all()  # fmt: skip
    chain = [scope.units[up].name for up in registry.ancestry(scope.units, row.unit) if up in scope.units]
    return render(request, browser, "box.html", box=row, status=box_status(central, row), units=chain,
                  state=row.state or {}, telemetry=row.telemetry or {}, logs=logs, events=events)  # fmt: skip


# -- wiring ----------------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """The pages' routers and their answers to a missing sign-in and to HTTP errors on a page."""
    from central import pages_actions  # after this module: it imports render from here

    app.include_router(router)
    app.include_router(pages_actions.router)

    @app.exception_handler(SignInNeeded)
    async def sign_in_first(_request: Request, error: SignInNeeded) -> Response:
        return redirect(f"/login?next={quote(error.next_url)}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """The API answers JSON as FastAPI does; a page answers a page in the browser's language."""
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return await http_exception_handler(request, error)
        browser = web_session.browser_of(request, request.app.state.central)
        return render(request, browser, "message.html", error.status_code, title=error.status_code,
                      message=str(error.detail))  # fmt: skip
