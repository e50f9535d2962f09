"""End to end: ``loa-central serve`` as a process (uvicorn, the embedded Mosquitto with its ACL), a
real agent (null player, mock GPIO) registered with ``device add``, and an operator using the API.

The agent of this branch takes commands but not yet manifests (the manifest origin and the audio
cache are being wired into it): the box's side of a bulletin is played here by the agent's own
modules, fetch_manifest and AudioCache, over the central's real HTTP, and the audio then plays
through a signed command sent by the API.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from agent.audio_cache import AudioCache
from agent.manifest_origin import fetch_manifest
from protocol.manifest import verify_manifest
from tests.agent_harness import running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.central_harness import ADMIN_PASSWORD, BIN, initialized, loa_central
from tests.mqtt_broker import free_port

DEVICE = "test-box-01"


class Server:
    def __init__(self, config: Path, http_port: int, mqtt_port: int) -> None:
        self.api = f"http://127.0.0.1:{http_port}/api"
        self.mqtt_port = mqtt_port
        self.log = config.parent / "serve.log"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(BIN / "loa-central"), "--config", str(config), "serve"],
                                            stdout=log, stderr=log, env=env)  # fmt: skip
        self.session = requests.Session()
        self._wait(lambda: self.session.get(f"{self.api}/v1/devices", timeout=1).status_code == 401)
        self._wait(lambda: socket.create_connection(("127.0.0.1", mqtt_port), timeout=1).close() is None)

    def _wait(self, ready: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"loa-central serve exited: {self.log.read_text()}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.1)
        raise AssertionError(f"loa-central serve not ready: {self.log.read_text()}")

    def login(self) -> None:
        answer = self.session.post(
            f"{self.api}/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, f"{self.api}/v1{path}", timeout=30, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json()

    def until(self, path: str, accept: Callable[[Any], bool], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.call("GET", path)
            if accept(value):
                return value
            time.sleep(0.2)
        raise AssertionError(f"GET {path} never satisfied the test; last: {value}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("loa-central serve did not stop on SIGTERM") from None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    http_port, mqtt_port = free_port(), free_port()
    config = initialized(tmp_path / "central", http_port=http_port, mqtt_port=mqtt_port)
    box = tmp_path / "box"
    loa_central(config, "device", "add", DEVICE, "--province", "tinh", "--commune", "xa-test",
                "--out", str(box), "--box-dir", str(box))  # fmt: skip
    running = Server(config, http_port, mqtt_port)
    try:
        yield running
    finally:
        running.stop()
    assert "embedded broker stopped" in running.log.read_text()


def test_an_operator_schedules_and_plays_a_bulletin_on_a_real_box(server: Server, tmp_path: Path) -> None:
    box = tmp_path / "box"
    server.login()
    tone = tone_file(tmp_path, 440, 1.0)
    with tone.open("rb") as source:
        sha = server.call("POST", "/audio", files={"file": ("tone.wav", source, "audio/wav")})["sha256"]
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    created = server.call("POST", "/bulletins", json={
        "title": "Bản tin", "audio_sha256": sha, "level": "priority", "targets": {"communes": ["xa-test"]},
        "at": at.isoformat()})  # fmt: skip
    assert created["manifests"] == {DEVICE: 1}

    # The box's side of the manifest, by the agent's own code, over the server's HTTP.
    token, etag = fetch_manifest(requests.Session(), server.api, DEVICE, None)
    assert token is not None and etag == '"1"'
    assert fetch_manifest(requests.Session(), server.api, DEVICE, etag) == (None, etag)
    key = load_pem_public_key((box / "central-signing-key.pub.pem").read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    manifest = verify_manifest(token, keys=[key], device_id=DEVICE, groups=frozenset({"xa-test", "tinh"}),
                               now=datetime.now(UTC), current_version=None)  # fmt: skip
    [item] = manifest.items
    assert item["audio"] == sha and datetime.fromisoformat(item["at"]) == at
    storage = box / "state"
    cached = AudioCache(storage, max_bytes=10**8).fetch(sha, manifest.audio_urls[sha], timeout=10)
    assert cached.read_bytes() == tone.read_bytes()

    # The real agent, with the central section device add wrote, on the embedded broker.
    write_schedule(box)
    central_section = (box / "central.yaml").read_text(encoding="utf-8")
    with running_agent(write_config(box, extra=central_section)):
        device = server.until(f"/devices/{DEVICE}", lambda d: d["online"] and d["state"] is not None)
        assert device["state"]["playing"] is None and device["groups"] == ["xa-test", "tinh"]
        ident = server.call("POST", "/commands", json={"type": "play_now", "audio": {"sha256": sha},
                                                       "targets": {"devices": [DEVICE]}})["id"]  # fmt: skip
        done = server.until(f"/commands/{ident}", lambda c: c["acks"][DEVICE]["result"] == "done")
        assert done["acks"][DEVICE]["audience"] == DEVICE
        rows = server.until("/playlogs", lambda rows: any(r["outcome"] == "completed" for r in rows))
        [row] = [r for r in rows if r["item_id"] == f"central-command-{ident}"]
        assert row["audio"].endswith(sha) and row["origin"] == "central" and row["device_id"] == DEVICE
