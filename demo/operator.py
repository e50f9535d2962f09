"""The operator's side of the demo: the REST API, as a province operator's program would use it."""

from __future__ import annotations

import math
import struct
import time
import wave
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests

from demo.stack import DemoError


class Operator:
    """A logged-in session on ``/api/v1``."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.api = f"{url}/api/v1"
        self.session = requests.Session()
        answer = self.session.post(f"{self.api}/auth/token", data={"username": user, "password": password},
                                   timeout=30)  # fmt: skip
        if answer.status_code != 200:
            raise DemoError(f"POST /auth/token as {user}: {answer.status_code} {answer.text}")
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, f"{self.api}{path}", timeout=60, **kwargs)
        if answer.status_code >= 300:
            raise DemoError(f"{method} /api/v1{path}: {answer.status_code} {answer.text}")
        return answer.json()

    def until(self, path: str, accept: Callable[[Any], bool], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.call("GET", path)
            if accept(value):
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"{what} not within {timeout:.0f} s; last GET /api/v1{path}: {value}")
            time.sleep(0.5)

    def upload(self, path: Path) -> str:
        with path.open("rb") as source:
            answer = self.call("POST", "/audio", files={"file": (path.name, source, "audio/wav")})
        return str(answer["sha256"])

    def bulletin(
        self, title: str, targets: dict[str, list[str]], at: datetime, **fields: Any
    ) -> dict[str, Any]:
        body = {"title": title, "level": "priority", "targets": targets, "at": at.isoformat(), **fields}
        created: dict[str, Any] = self.call("POST", "/bulletins", json=body)
        return created

    def play_logs(self, item_id: str) -> list[dict[str, Any]]:
        return [row for row in self.call("GET", "/playlogs") if row["item_id"] == item_id]

    def report(self, day: date) -> dict[str, Any]:
        params = {"from": day.isoformat(), "to": day.isoformat(), "group_by": "commune"}
        report: dict[str, Any] = self.call("GET", "/reports/broadcasts", params=params)
        return report


def write_chime(path: Path, seconds: float = 3.0, rate: int = 22050) -> None:
    """A three-note chime, as a station plays before its news: what the operator uploads."""
    frames = bytearray()
    notes = (523.25, 659.25, 783.99)
    for n in range(int(seconds * rate)):
        freq = notes[min(int(n / rate / seconds * len(notes)), len(notes) - 1)]
        frames += struct.pack("<h", int(10000 * math.sin(2 * math.pi * freq * n / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
