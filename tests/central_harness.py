"""A central server set up as a technician would: a config file, ``loa-central init``, boxes added."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from central import cli, db
from central.audio_store import AudioStore
from central.config import load_central_config
from central.context import Central
from central.signing import load_signing_key
from central.tts import EspeakNg

BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "correct horse battery"
BOX_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # devices.timezone by default: the configs below leave it


def loa_central(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``loa-central --config CONFIG ARGS`` as a subprocess, with this checkout's code."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run([str(BIN / "loa-central"), "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env)  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"loa-central {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def write_central_config(
    directory: Path,
    *,
    http_port: int = 8080,
    mqtt_port: int = 1883,
    extra: str = "",
    broker: str = "embedded",
    mqtt_extra: str = "",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "central.yaml"
    path.write_text(
        f"storage: {{dir: {directory / 'data'}}}\n"
        f"http: {{listen: 127.0.0.1:{http_port}}}\n"
        f"public_url: http://127.0.0.1:{http_port}\n"
        f"mqtt: {{broker: '{broker}', listen: 127.0.0.1:{mqtt_port}{mqtt_extra}}}\n" + extra,
        encoding="utf-8",
    )
    return path


def initialized(directory: Path, **kwargs: Any) -> Path:
    """A config file and an initialized central server (admin ``admin``); the config's path."""
    config = write_central_config(directory, **kwargs)
    password = directory / "admin-password"
    password.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    loa_central(config, "init", "--admin", "admin", "--password-file", str(password))
    return config


class RecordingPublisher:
    """Stands in for the broker where MQTT itself is not the point: keeps what was published, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []

    def publish(self, topic: str, payload: str, *, retain: bool = False, timeout: float = 5.0) -> bool:
        self.sent.append((topic, payload, retain))
        return True

    def publish_all(
        self, messages: Sequence[tuple[str, str]], *, retain: bool = False, timeout: float = 5.0
    ) -> list[bool]:
        return [self.publish(topic, payload, retain=retain) for topic, payload in messages]


def make_central(
    directory: Path, publisher: Any, database_url: str | None = None, extra: str = "", **ports: int
) -> Central:
    """A Central over an initialized config in ``directory`` (admin ``admin``), boxes of two communes:
    xa-a-01, xa-a-02 in xa-a and xa-b-01 in xa-b, all in province tinh; operators op-a (xa-a),
    op-tinh (tinh) and viewer-a (viewer of xa-a), each with password ADMIN_PASSWORD; ``extra`` is
    more config text (``devices: {timezone: ...}``)."""
    extra += f"database: {{url: '{database_url}'}}\n" if database_url else ""
    config_path = write_central_config(directory, extra=extra, **ports)
    password = directory / "admin-password"
    password.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    run = [f"--config={config_path}"]
    assert cli.main([*run, "init", "--admin", "admin", "--password-file", str(password)]) == 0
    for device, commune in (("xa-a-01", "xa-a"), ("xa-a-02", "xa-a"), ("xa-b-01", "xa-b")):
        assert cli.main([*run, "device", "add", device, "--province", "tinh", "--commune", commune,
                         "--commune-name", f"Xã {commune[-1].upper()}", "--out", str(directory / device),
                         "--box-dir", str(directory / device)]) == 0  # fmt: skip
    for name, role, unit in (("op-a", "operator", "xa-a"), ("op-tinh", "operator", "tinh"),
                             ("viewer-a", "viewer", "xa-a")):  # fmt: skip
        assert cli.main([*run, "user", "add", name, "--role", role, "--unit", unit,
                         "--password-file", str(password)]) == 0  # fmt: skip
    config = load_central_config(config_path)
    return Central(
        config,
        db.open_engine(config.database_url),
        load_signing_key(config.signing_key_file),
        publisher,
        AudioStore(config.audio_dir, config.audio_max_bytes),
        EspeakNg("vi"),
    )


@contextmanager
def central_on_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Central]:
    """``make_central`` on a SQLite file, or on the module's PostgreSQL when ``request.param`` says
    ``postgresql`` (its tables dropped afterwards); for fixtures parametrized over both."""
    url = request.getfixturevalue("postgres").url if request.param == "postgresql" else None
    made = make_central(tmp_path, RecordingPublisher(), url)
    try:
        yield made
    finally:
        if url is not None:
            db.metadata.drop_all(made.engine)
        made.engine.dispose()


def login(client: TestClient, name: str = "admin") -> dict[str, str]:
    """A bearer token for ``name`` (password ADMIN_PASSWORD) from the REST API; its header."""
    answer = client.post("/api/v1/auth/token", data={"username": name, "password": ADMIN_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def upload(client: TestClient, headers: dict[str, str], path: Path, mime: str = "audio/wav") -> Any:
    with path.open("rb") as source:
        return client.post("/api/v1/audio", headers=headers, files={"file": (path.name, source, mime)})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def sign_in(client: TestClient, name: str = "admin") -> str:
    """Sign in through the form; the CSRF token the next forms carry."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": name, "password": ADMIN_PASSWORD, "csrf": token,
                                         "next": "/boxes"})  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/boxes", answer.text
    return token


class MqttClient:
    """A plain MQTT client that collects what it receives."""

    def __init__(self, port: int, user: str, password: str | None = None) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.refused: queue.Queue[str] = queue.Queue()
        self.subscribed: queue.Queue[int] = queue.Queue()
        self.disconnected: queue.Queue[str] = queue.Queue()  # each time the connection is lost or cut
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self.refused.put(str(reason))
        self.client.on_subscribe = lambda _c, _u, mid, _r, _p: self.subscribed.put(mid)
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: self.disconnected.put(str(reason))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.refused.get(timeout=10) == "Success"

    def subscribe(self, *topics: str) -> None:
        result, mid = self.client.subscribe([(topic, 1) for topic in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert self.subscribed.get(timeout=10) == mid  # the SUBACK: what comes after it is delivered

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def next(self, timeout: float = 10) -> tuple[str, bytes]:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
