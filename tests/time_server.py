"""A real HTTP server standing in for the central server's ``GET /v1/time``: it signs its answers
with a test key (protocol.time_sync.sign_time_answer), or misbehaves as a test asks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.time_sync import CONTENT_TYPE, TIME_PATH, sign_time_answer
from tests.http_stand_in import serving


class TimeServer:
    """``mode``: good, replay (the first answer it made, again), foreign-key, slow, error, huge,
    trickle (a good answer, a byte every 0.2 s)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.mode = "good"
        self.skew = timedelta(0)  # the central clock minus the real one
        self.delay = 0.0  # seconds, in slow mode
        self.nonces: list[str] = []
        self.first_answer: bytes | None = None
        self.api_url = ""  # once entered
        self._serving = ExitStack()

    def answer(self, device: str, nonce: str) -> tuple[int, bytes]:
        now = datetime.now(UTC) + self.skew
        if self.mode == "error":
            return 500, b"internal error"
        if self.mode == "huge":
            return 200, b"e" * 100_000
        key = Ed25519PrivateKey.generate() if self.mode == "foreign-key" else self.key
        body = sign_time_answer(device, nonce, now, key).encode()
        if self.first_answer is None:
            self.first_answer = body
        if self.mode == "replay":
            return 200, self.first_answer
        if self.mode == "slow":
            time.sleep(self.delay)
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path != f"/api{TIME_PATH}" or "nonce" not in query or "device" not in query:
                    self.send_error(404)
                    return
                owner.nonces.append(query["nonce"][0])
                status, body = owner.answer(query["device"][0], query["nonce"][0])
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.mode != "trickle":
                    self.wfile.write(body)
                    return
                for byte in body:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return  # the box hung up
                    time.sleep(0.2)

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def __enter__(self) -> TimeServer:
        self.api_url = self._serving.enter_context(serving(self._handler())) + "/api"
        return self

    def __exit__(self, *_: object) -> None:
        self._serving.close()


def run_time_server(key: Ed25519PrivateKey) -> Iterator[TimeServer]:
    with TimeServer(key) as server:
        yield server
