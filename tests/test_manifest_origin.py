"""The central origin over a real HTTP server: fetch with ETag, verify, apply whole, survive a restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import load_config
from agent.manifest_origin import AUDIO_URLS_KEY, ManifestFetchError, ManifestOrigin, fetch_manifest
from agent.schedule_source import CENTRAL_ORIGIN, Schedule
from agent.store import Store
from protocol.manifest import ManifestRefused, Reason, sign_manifest
from tests.agent_harness import write_config, write_schedule
from tests.http_stand_in import serving

DEVICE = "test-box-01"
KEY = Ed25519PrivateKey.generate()
NOW = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def item(ident: str, **changes: Any) -> dict[str, Any]:
    audio = {"sha256": SHA, "url": f"https://central.example.vn/audio/{SHA}"}
    base = {"id": ident, "audio": audio, "rrule": "FREQ=DAILY", "dtstart": "2099-01-01 06:00"}
    return base | changes


def manifest(version: str, *items: dict[str, Any], key: Ed25519PrivateKey = KEY) -> str:
    claims = {"v": 1, "aud": DEVICE, "iat": int(NOW.timestamp()), "version": version, "items": list(items)}
    return sign_manifest(claims, key)


class Central:
    """A manifest server: serves ``token`` with an ETag and answers If-None-Match with 304."""

    def __init__(self) -> None:
        self.token = ""
        self.requests: list[tuple[str, str | None, int]] = []
        central = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = f'"{hash(central.token) & 0xFFFFFFFF:x}"'
                asked = self.headers.get("If-None-Match")
                if self.path != f"/v1/devices/{DEVICE}/manifest":
                    status, body = 404, b""
                elif asked == etag:
                    status, body = 304, b""
                else:
                    status, body = 200, central.token.encode()
                central.requests.append((self.path, asked, status))
                self.send_response(status)
                if status != 404:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler
        self.url = ""


@pytest.fixture
def central() -> Iterator[Central]:
    server = Central()
    with serving(server.handler) as url:
        server.url = url
        yield server


def box(tmp_path: Path, url: str) -> tuple[Schedule, Store, ManifestOrigin]:
    config = load_config(tmp_path / "agent.yaml")
    store = Store.open(config.storage.dir)
    schedule = Schedule(config)
    schedule.load(store)
    origin = ManifestOrigin(
        schedule, store, keys=[KEY.public_key()], device_id=DEVICE, groups=frozenset(), source=url
    )
    return schedule, store, origin


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    write_schedule(tmp_path, "{id: local-1, audio: a.wav, at: '2099-01-01T06:30:00+07:00'}")
    write_config(tmp_path)
    return tmp_path


def ids(schedule: Schedule) -> dict[str, str]:
    return {entry.id: schedule.origin_of(entry) for entry in schedule.items}


def test_fetch_verify_apply_gives_the_union_and_a_restart_keeps_it(setup: Path, central: Central) -> None:
    central.token = manifest("3", item("central-1"), item("central-2", priority="priority"))
    schedule, store, origin = box(setup, central.url)
    with requests.Session() as session:
        token, etag = fetch_manifest(session, central.url, DEVICE, None)
    assert token == central.token and etag
    origin.apply(token, NOW)
    assert ids(schedule) == {"local-1": "local", "central-1": CENTRAL_ORIGIN, "central-2": CENTRAL_ORIGIN}
    central_item = next(entry for entry in schedule.items if entry.id == "central-1")
    assert schedule.audio_path(central_item) == schedule.config.storage.dir / "audio" / SHA
    assert store.get_state(AUDIO_URLS_KEY) == {SHA: f"https://central.example.vn/audio/{SHA}"}
    assert schedule.status()["origins"][CENTRAL_ORIGIN]["version"] == "3"
    store.close()

    restarted, store2, origin2 = box(setup, central.url)
    assert ids(restarted) == ids(schedule)
    assert origin2.version == "3" and restarted.status()["origins"][CENTRAL_ORIGIN]["source"].startswith(
        "store"
    )
    assert [i for i in restarted.items if i.id == "central-2"] == [
        i for i in schedule.items if i.id == "central-2"
    ]
    store2.close()


def test_an_unchanged_manifest_is_answered_304_and_changes_nothing(setup: Path, central: Central) -> None:
    central.token = manifest("1", item("central-1"))
    schedule, store, origin = box(setup, central.url)
    with requests.Session() as session:
        token, etag = fetch_manifest(session, central.url, DEVICE, None)
        assert token is not None
        origin.apply(token, NOW)
        assert fetch_manifest(session, central.url, DEVICE, etag) == (None, etag)
        central.token = manifest("2", item("central-9"))
        newer, newer_etag = fetch_manifest(session, central.url, DEVICE, etag)
    assert [status for _, _, status in central.requests] == [200, 304, 200]
    assert central.requests[1][1] == etag and newer_etag != etag
    assert newer is not None and origin.apply(newer, NOW).version == "2"
    assert set(ids(schedule)) == {"local-1", "central-9"}
    store.close()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda: manifest("5", item("central-x"), key=Ed25519PrivateKey.generate()), Reason.BAD_SIGNATURE),
        (lambda: manifest("1", item("central-x")), Reason.STALE),
        (lambda: manifest("5", item("central-x"), item("central-y", zones=["zone-9"])), Reason.BAD_ITEMS),
        (lambda: manifest("5", item("central-x"), item("central-y", audoi=1)), Reason.BAD_ITEMS),
    ],
    ids=["signature", "stale", "unknown-zone", "unknown-key"],
)
def test_a_bad_manifest_leaves_the_previous_in_force(
    setup: Path, central: Central, bad: Any, reason: Reason
) -> None:
    schedule, store, origin = box(setup, central.url)
    origin.apply(manifest("2", item("central-1")), NOW)
    central.token = bad()
    with requests.Session() as session:
        token, _ = fetch_manifest(session, central.url, DEVICE, None)
    assert token is not None
    with pytest.raises(ManifestRefused) as refused:
        origin.apply(token, NOW)
    assert refused.value.reason == reason
    if reason == Reason.BAD_ITEMS:
        assert [p.key_path[:2] for p in refused.value.problems] == [("items", 1)]  # type: ignore[union-attr]
    assert set(ids(schedule)) == {"local-1", "central-1"} and origin.version == "2"
    store.close()
    restarted, store2, _ = box(setup, central.url)
    assert set(ids(restarted)) == {"local-1", "central-1"}
    store2.close()


def test_a_server_error_is_a_fetch_error(central: Central) -> None:
    with requests.Session() as session, pytest.raises(ManifestFetchError, match="HTTP 404"):
        fetch_manifest(session, central.url + "/elsewhere", DEVICE, None)
