"""The control socket under clients that misbehave: slow, idle by the hundred, or sending deeply
nested JSON; a command that waits for the agent loop; and what ``loa status`` says when the agent
is not running versus running but not answering.  Real Unix sockets and real processes throughout."""

from __future__ import annotations

import json
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from agent.commands import CommandHandler, Execute, Result
from agent.control import ControlServer, front_end, request
from agent.store import Store
from foundation.errors import NoAnswerError
from tests.agent_harness import running_agent, write_config, write_schedule

BIN = Path(sys.executable).parent
SLOW_GAP = 1.5  # seconds between the bytes of a slow client: shorter than any per-recv timeout


def loa(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``loa`` console script, as a technician runs it."""
    return subprocess.run(
        [str(BIN / "loa"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def connect(path: Path, deadline: float) -> socket.socket:
    """A connected client socket; a full listen backlog is waited out, up to ``deadline``."""
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:  # the backlog is full: the server is not accepting
            sock.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} refused connections for too long") from None
            time.sleep(0.01)


def read_reply(sock: socket.socket, timeout: float) -> dict[str, Any]:
    """The one JSON line the server answers with, read within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    reply = json.loads(data or b"null")
    assert isinstance(reply, dict), data
    return reply


class SlowClient(threading.Thread):
    """Sends ``{"cmd": "status"}`` one byte every 1.5 s and reconnects whenever it is cut off, for as
    long as it runs: the client that used to hold the control socket forever."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="slow-client", daemon=True)
        self.path = path
        self.connected = threading.Event()
        self.cut = threading.Event()  # the server answered and closed, before the request was whole
        self.replies: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(str(self.path))
                except OSError:  # the agent has stopped
                    return
                self._trickle(sock)

    def _trickle(self, sock: socket.socket) -> None:
        for byte in b'{"cmd": "status"}\n':
            if self.halt.is_set():
                return
            with suppress(OSError):  # closed by the server: its answer, if any, is still there to read
                sock.sendall(bytes([byte]))
            self.connected.set()
            sock.settimeout(SLOW_GAP)  # waits for the server's answer; paces the bytes meanwhile
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            self.replies.append(json.loads(data.splitlines()[0]) if data else {})
            self.cut.set()
            return


@pytest.fixture
def slow_clients() -> Iterator[list[SlowClient]]:
    clients: list[SlowClient] = []
    yield clients
    for client in clients:
        client.halt.set()
    for client in clients:
        client.join(timeout=5)


def test_slow_clients_do_not_block_loa_status(tmp_path: Path, slow_clients: list[SlowClient]) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    with running_agent(config) as box:
        for _ in range(4):  # more than one: even serving them one after the other must not do
            client = SlowClient(box.config.control.socket)
            client.start()
            slow_clients.append(client)
        for client in slow_clients:
            assert client.connected.wait(5)
        for _ in range(2):
            answer = loa(config, "status", "--json")
            assert answer.returncode == 0, answer.stdout + answer.stderr
            assert json.loads(answer.stdout)["running"] is True
        for client in slow_clients:  # the deadline is for the whole request, not for each byte
            assert client.cut.wait(10), "a slow client was never cut off"
            client.halt.set()
    reply = slow_clients[0].replies[0]
    assert reply["ok"] is False and "not complete within 2 s" in reply["error"]


class HeldLoop:
    """Stands in for the agent's main loop: holds every command until the test releases it."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[object] = queue.Queue()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (event := self.inbox.get()) is not None:
            assert isinstance(event, Execute)
            self.release.wait(20)
            event.pending.resolve(Result.DONE, "played")

    def close(self) -> None:
        self.release.set()
        self.inbox.put(None)
        self._thread.join(5)


def test_a_command_waiting_for_the_agent_does_not_block_status(tmp_path: Path) -> None:
    loop = HeldLoop()
    handler = CommandHandler(loop.inbox.put, zones=frozenset(), status=lambda: {"state": "x"}, wait=15)
    path = tmp_path / "agent.sock"
    server = ControlServer(path, front_end(handler))
    server.start()
    try:
        replies: list[dict[str, Any]] = []
        waiting = threading.Thread(target=lambda: replies.append(request(path, "reload", timeout=20)))
        waiting.start()
        assert request(path, "status") == {"ok": True, "state": "x"}
        assert replies == []  # the reload was still waiting for the loop while status answered
        loop.release.set()
        waiting.join(10)
        assert replies and replies[0]["result"] == "done"
    finally:
        server.stop()
        loop.close()


@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "agent.sock"
    server = ControlServer(path, lambda req: {"ok": True, "state": "running", "cmd": req.get("cmd")})
    server.start()
    yield path
    server.stop()


def test_two_hundred_idle_connections_get_a_reply_and_status_still_answers(echo_server: Path) -> None:
    path = echo_server
    deadline = time.monotonic() + 10
    idle = [connect(path, deadline) for _ in range(200)]
    try:
        try:
            reply = request(path, "status")
        except NoAnswerError as exc:  # a clear "busy" is acceptable; silence is not
            assert "busy" in str(exc)
        else:
            assert reply == {"ok": True, "state": "running", "cmd": "status"}
        replies = [read_reply(sock, timeout=10) for sock in idle]  # nobody is left hanging
    finally:
        for sock in idle:
            sock.close()
    busy = [r for r in replies if "busy" in r.get("error", "")]
    timed_out = [r for r in replies if "not complete within 2 s" in r.get("error", "")]
    assert all(r["ok"] is False for r in replies)
    assert len(busy) + len(timed_out) == 200 and busy and timed_out
    assert request(path, "status")["state"] == "running"  # the idle ones are gone: it answers


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 60_000 + b"\n", "nested too deeply"),  # within the size limit: json's RecursionError
        (b'{"cmd": "play", "zones": ' + b"[" * 100 + b"]" * 100 + b"}\n", "nested too deeply"),
        (b"[" * 100_000 + b"\n", "too long (more than 65536 bytes)"),
        (b'{"cmd": "status", "x": "\xff"}\n', "not UTF-8"),
        (b'{"cmd": 1' + b"0" * 5000 + b"}\n", "not JSON"),
    ],
    ids=["deep-60k", "deep-100", "long-100k", "bad-utf8", "huge-int"],
)
def test_hostile_requests_get_an_error_reply_and_no_traceback(
    echo_server: Path, line: bytes, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with connect(echo_server, time.monotonic() + 5) as sock:
        sock.sendall(line)
        reply = read_reply(sock, timeout=5)
    assert reply["ok"] is False and error in reply["error"], reply
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert request(echo_server, "status")["state"] == "running"


def test_loa_status_tells_not_running_from_not_answering(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    Store.open(tmp_path / "state").close()  # the agent ran here once: the store is there
    missing = loa(config, "status", "--lang", "en")
    assert missing.returncode == 1 and "NOT RUNNING" in missing.stdout, missing.stdout
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "agent.sock"))
    stale.close()  # a socket file left behind, nobody listening: refused
    refused = loa(config, "status", "--lang", "en")
    assert refused.returncode == 1 and "NOT RUNNING" in refused.stdout, refused.stdout
    (tmp_path / "agent.sock").unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:  # listens, never answers
        hung.bind(str(tmp_path / "agent.sock"))
        hung.listen(4)
        text = loa(config, "status", "--lang", "en")
        as_json = loa(config, "status", "--json")
    assert text.returncode == 6, text.stdout + text.stderr
    assert "NOT RUNNING" not in text.stdout and "not running" not in text.stdout
    assert "RUNNING but NOT ANSWERING" in text.stdout and "did not answer within 3 s" in text.stdout
    assert "what the store knows" in text.stdout
    status = json.loads(as_json.stdout)
    assert as_json.returncode == 6 and status["state"] == "not answering" and status["running"] is None
