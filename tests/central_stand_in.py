"""The central server as a box sees it, for the agent's tests: its MQTT side (``Central``), its HTTP side
(``Http``: manifests and audio), signed command claims and manifests, and an agent configured to use it."""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from protocol.manifest import sign_manifest
from protocol.messages import decode_ack
from tests.agent_harness import RunningAgent, at, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.http_stand_in import serving
from tests.mqtt_broker import Broker

DEVICE = "test-box-01"
TOPIC = f"loa/v1/{DEVICE}"


@dataclass
class Http:
    """The central server's HTTP side: this box's manifest (ETag, 304, 404 before there is one) and audio."""

    token: str = ""
    audio: dict[str, bytes] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)
    manifest_answers: list[tuple[str | None, int]] = field(default_factory=list)  # If-None-Match, status
    url: str = ""

    def manifest_gets(self) -> int:
        return sum(1 for path in self.gets if path.endswith("/manifest"))

    def audio_gets(self, sha256: str) -> int:
        return self.gets.count(f"/audio/{sha256}")


def _handler(http: Http) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            http.gets.append(self.path)
            status, body, etag = 404, b"", None
            if self.path == f"/v1/devices/{DEVICE}/manifest" and http.token:
                etag = '"' + hashlib.sha256(http.token.encode()).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    status = 304
                else:
                    status, body = 200, http.token.encode()
            elif self.path.startswith("/audio/") and self.path[7:] in http.audio:
                status, body = 200, http.audio[self.path[7:]]
            if self.path.endswith("/manifest"):
                http.manifest_answers.append((self.headers.get("If-None-Match"), status))
            self.send_response(status)
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve_http() -> Iterator[Http]:
    """An ``Http`` served on a free port until the generator is closed."""
    state = Http()
    with serving(_handler(state)) as url:
        state.url = url
        yield state


class Central:
    """A test subscriber standing in for the central server: sends commands, collects what comes."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-central", clean_session=False,
                                  protocol=mqtt.MQTTv311)  # fmt: skip
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/#", qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def send(self, token: str) -> None:
        self.client.publish(f"{TOPIC}/cmd", token, qos=1).wait_for_publish(5)

    def wait(self, what: Any, timeout: float = 10) -> tuple[str, bytes]:
        """The first message (seen before or arriving within ``timeout``) that ``what`` accepts."""
        for message in self.seen:
            if what(*message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(message)
            if what(*message):
                return message
        raise AssertionError(f"no such message within {timeout} s; seen: {self.seen}")

    def acks(self, ident: str, timeout: float = 10, count: int = 1) -> list[str]:
        results: list[str] = []
        for index in range(count):
            self.wait(lambda t, p, n=index: t == f"{TOPIC}/ack" and _ack_matches(p, ident, n), timeout)
        for topic, payload in self.seen:
            if topic == f"{TOPIC}/ack" and decode_ack(payload).id == ident:
                results.append(decode_ack(payload).result.value)
        return results

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _ack_matches(payload: bytes, ident: str, index: int) -> bool:
    return decode_ack(payload).id == ident and True


def claims(jti: str, **fields: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"jti": jti, "aud": DEVICE, "iat": now, "exp": now + 600, **fields}


def audio(tmp_path: Path, frequency: float = 440, seconds: float = 1.0) -> tuple[str, bytes]:
    data = tone_file(tmp_path, frequency, seconds).read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def manifest(key: Ed25519PrivateKey, version: str, *items: dict[str, Any]) -> str:
    claims = {"v": 1, "aud": DEVICE, "iat": int(time.time()), "version": version, "items": list(items)}
    return sign_manifest(claims, key)


def ref(http: Http, sha256: str) -> dict[str, str]:
    return {"sha256": sha256, "url": f"{http.url}/audio/{sha256}"}


def item(ident: str, http: Http, sha256: str, start: str, **more: Any) -> dict[str, Any]:
    return {"id": ident, "audio": ref(http, sha256), "at": start, **more}


def central_section(broker: Broker, **keys: str) -> str:
    """The agent's ``central:`` section for ``broker``, trusting ``central.pub`` (the ``key`` fixture
    writes it beside the config), with ``keys`` as YAML values."""
    more = "".join(f", {name}: {value}" for name, value in keys.items())
    return f"central: {{mqtt_url: '{broker.url}', signing_public_key_files: [central.pub]{more}}}"


def linked_config(tmp_path: Path, broker: Broker, **options: Any) -> Path:
    """An agent config with the default schedule and a ``central:`` section for ``broker``."""
    write_schedule(tmp_path)
    return write_config(tmp_path, extra=central_section(broker), **options)


def wait_linked(running: RunningAgent) -> None:
    """Until the agent's link to the broker is up (10 s at most)."""
    running.wait_for(lambda: running.agent.link is not None and running.agent.link.up, 10)


def configure(
    tmp_path: Path, broker: Broker, http: Http, poll: str = "1h", extra_storage: str = "", **options: Any
) -> Path:
    write_schedule(
        tmp_path, f"{{id: local-1, audio: {tone_file(tmp_path, 330, 0.5).name}, at: '{at(3600)}'}}"
    )
    extra = central_section(broker, api_url=f"'{http.url}'", manifest_poll=poll, groups="[xa-test]")
    path = write_config(tmp_path, extra=extra, **options)
    if extra_storage:
        text = path.read_text(encoding="utf-8").replace(
            "storage: {dir: state}", f"storage: {{dir: state, {extra_storage}}}"
        )
        path.write_text(text, encoding="utf-8")
    return path


def row_of(running: RunningAgent, item_id: str) -> Any:
    rows = [row for row in running.play_log() if row.item_id == item_id]
    return rows[-1] if rows else None
