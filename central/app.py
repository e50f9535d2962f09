"""The FastAPI application: routers are separate modules (auth, api; web pages and reports join the
same way, each an APIRouter included here), and errors become plain HTTP answers in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from central import api, auth, pages, reports_api, time_api, upstream_api
from central.access import Forbidden
from central.audio_store import AudioRefused
from central.commands import CommandError
from central.context import Central
from central.registry import RegistryError
from central.targets import BulletinError
from central.tts import SpeechError


def create_app(central: Central) -> FastAPI:
    app = FastAPI(title="Loa central", version="1", openapi_url="/openapi.json", docs_url="/api/docs")
    app.state.central = central
    app.include_router(reports_api.router)
    app.include_router(upstream_api.router)
    pages.install(app)
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(time_api.router)
    _errors(app)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(Forbidden)
    async def forbidden(_request: Request, error: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=403)

    @app.exception_handler(BulletinError)
    async def bad_bulletin(_request: Request, error: BulletinError) -> JSONResponse:
        return JSONResponse({"detail": error.problems}, status_code=422)

    @app.exception_handler(CommandError)
    async def bad_command(_request: Request, error: CommandError) -> JSONResponse:
        return JSONResponse({"detail": [str(error)]}, status_code=422)

    @app.exception_handler(RegistryError)
    async def bad_registration(_request: Request, error: RegistryError) -> JSONResponse:
        return JSONResponse({"detail": [str(error)]}, status_code=422)

    @app.exception_handler(AudioRefused)
    async def bad_audio(_request: Request, error: AudioRefused) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(SpeechError)
    async def no_speech(_request: Request, error: SpeechError) -> JSONResponse:
        return JSONResponse({"detail": f"speech synthesis failed: {error}"}, status_code=502)
