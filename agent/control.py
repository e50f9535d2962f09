"""The local control socket: how ``loa`` talks to the running daemon.

A Unix stream socket (``control.socket``, mode 0660: the agent's user and group, which the
unit makes ``loa``, the crew's group; nobody else).  One request per connection:
the client sends one JSON object on a line, ``{"cmd": "play", "file": "/srv/a.wav"}``, and reads
one JSON object back: the command's answer (``agent.commands.Ack``: ``id``, ``result``, ``reason``)
with ``ok`` false when it was rejected; ``status`` answers the status snapshot itself.  The server
threads never touch agent state: every request goes through the command handler, the agent's one
front door.

Each client is served on its own thread, at most ``MAX_CLIENTS`` at once, because a command may
wait seconds for the agent loop (``play`` waits for the audio to start) and a client may be slow
or hostile: none of them may keep ``status`` from answering.  A request must arrive whole within
``REQUEST_DEADLINE`` and the reply leave within ``REPLY_DEADLINE``; a connection beyond the cap
gets a ``busy`` reply at once and is closed, which the client retries until its own deadline.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from agent.commands import CommandHandler, Result
from foundation.errors import NoAnswerError, NoPermissionError, NotRunningError

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]  # the request -> the reply (without "ok")
MAX_REQUEST = 64 * 1024
MAX_REPLY = 1024 * 1024
MAX_DEPTH = 8  # a request is an object of flat values and lists; deeper is not a request
MAX_CLIENTS = 16  # served at once: crews and the central link are a handful; beyond is a fault
REQUEST_DEADLINE = 2.0  # seconds for the whole request line, however it trickles in
REPLY_DEADLINE = 2.0
BUSY_RETRY = 0.1  # seconds a client waits before asking again after a busy reply
BUSY_LOG_EVERY = 60.0  # seconds between warnings about refused connections


class ControlServer:
    """Serves control requests on a Unix socket: one accepting thread, one thread per client."""

    def __init__(self, path: Path, handler: Handler, *, max_clients: int = MAX_CLIENTS) -> None:
        self.path = path
        self._handler = handler
        self._max_clients = max_clients
        self._slots = threading.BoundedSemaphore(max_clients)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._refused = 0  # connections answered "busy" since the last warning
        self._refused_logged = -BUSY_LOG_EVERY

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # born 0660: no window where others than the group may connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(64)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()
        logger.info("control socket listening on %s (%d clients at once)", self.path, self._max_clients)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
        with suppress(FileNotFoundError):
            self.path.unlink()
        logger.info("control socket stopped")

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._slots.acquire(blocking=False):
                self._start_client(conn)
            else:
                self._refuse(conn)

    def _start_client(self, conn: socket.socket) -> None:
        thread = threading.Thread(target=self._client, args=(conn,), name="control-client", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: as busy as can be
            self._slots.release()
            self._refuse(conn)

    def _refuse(self, conn: socket.socket) -> None:
        """Answer ``busy`` without waiting for anything: the reply fits in the empty socket buffer."""
        with conn:
            conn.setblocking(False)
            with suppress(OSError):
                conn.send(_encode({"ok": False, "busy": True, "error": self._busy()}))
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= BUSY_LOG_EVERY:
            logger.warning("control socket busy: refused %d connection(s): %s", self._refused, self._busy())
            self._refused, self._refused_logged = 0, now

    def _busy(self) -> str:
        return f"busy: {self._max_clients} requests are being answered; try again"

    def _client(self, conn: socket.socket) -> None:
        try:
            with conn:
                reply = self._answer(conn)
                conn.settimeout(REPLY_DEADLINE)  # for the whole reply (Python >= 3.5 sendall)
                with suppress(OSError):
                    conn.sendall(_encode(reply))
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> dict[str, Any]:
        try:
            request = parse_request(_read_line(conn, time.monotonic() + REQUEST_DEADLINE, MAX_REQUEST))
        except TimeoutError:
            return {"ok": False, "error": f"request not complete within {REQUEST_DEADLINE:g} s"}
        except (ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        try:
            return self._handler(request)
        except (ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not kill the server
            logger.exception("control request failed")
            return {"ok": False, "error": f"internal error: {exc}"}


def parse_request(line: bytes) -> dict[str, Any]:
    """One request from its line; ValueError in plain words for anything that is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"request is not UTF-8: {exc}") from None
    try:
        request = json.loads(text)
    except RecursionError:  # json's own recursion, before any depth check could run
        raise ValueError(f"request nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    if _depth(request) > MAX_DEPTH:
        raise ValueError(f"request nested too deeply (at most {MAX_DEPTH} levels)")
    return request


def _depth(value: object) -> int:
    """How deeply ``value`` nests, counted without recursion (the value comes from outside)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, default=str).encode() + b"\n"


def _read_line(conn: socket.socket, deadline: float, limit: int) -> bytes:
    """The first line from ``conn``, all of it by ``deadline`` (monotonic): TimeoutError if not."""
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        conn.settimeout(remaining)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"line too long (more than {limit} bytes)")
    return data.split(b"\n", 1)[0]


def request(path: Path, cmd: str, timeout: float = 3.0, **params: Any) -> dict[str, Any]:
    """Send one request to the daemon and return its reply, asking again while it is busy.

    NotRunningError when nobody listens (no socket, or refused); NoAnswerError when the agent holds
    its socket but does not answer within ``timeout`` seconds (busy or stuck).
    """
    deadline = time.monotonic() + timeout
    line = json.dumps({"cmd": cmd, **params}).encode() + b"\n"
    while True:
        reply = _exchange(path, line, deadline, timeout)
        if reply is not None and not reply.get("busy"):
            return reply
        if time.monotonic() + BUSY_RETRY >= deadline:
            why = reply.get("error") if reply is not None else "its socket's queue is full"
            raise NoAnswerError(f"the agent did not answer within {timeout:g} s on {path}: {why}")
        time.sleep(BUSY_RETRY)


def _exchange(path: Path, line: bytes, deadline: float, timeout: float) -> dict[str, Any] | None:
    """One connection: the reply, or None when the listen queue is full (busy)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(str(path))
        except BlockingIOError:  # the listen queue is full: there, but busy
            return None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunningError(f"the agent is not running (nobody listens on {path})") from exc
        except PermissionError as exc:
            raise NoPermissionError(
                f"no permission to use {path}: run loa with sudo, or as a member of the loa group"
            ) from exc
        except TimeoutError as exc:
            raise NoAnswerError(f"the agent did not answer within {timeout:g} s on {path}") from exc
        except OSError as exc:
            raise NotRunningError(f"cannot reach the agent on {path}: {exc}") from exc
        return _reply(sock, line, deadline, f"the agent did not answer within {timeout:g} s on {path}")


def _reply(sock: socket.socket, line: bytes, deadline: float, no_answer: str) -> dict[str, Any]:
    try:
        # MSG_NOSIGNAL: `loa` restores the default SIGPIPE, which would kill it silently here
        with suppress(BrokenPipeError, ConnectionResetError):  # refused unread: its reply is there
            sock.sendall(line, socket.MSG_NOSIGNAL)
        data = _read_line(sock, deadline, MAX_REPLY)
    except TimeoutError as exc:
        raise NoAnswerError(no_answer) from exc
    except (OSError, ValueError) as exc:
        raise NoAnswerError(f"{no_answer}: {exc}") from exc
    try:
        reply = json.loads(data) if data else None
    except ValueError as exc:
        raise NoAnswerError(f"{no_answer}: its reply is not JSON ({exc})") from exc
    if not isinstance(reply, dict):
        raise NoAnswerError(f"{no_answer}: it closed the connection without a reply")
    return reply


def front_end(handler: CommandHandler) -> Handler:
    """The control socket as a front end of the command handler (local commands)."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("cmd"))
        params = {key: value for key, value in request.items() if key not in ("cmd", "id")}
        command_id = request.get("id")
        ack = handler.submit(name, params, origin="local", command_id=str(command_id) if command_id else None)
        if name == "status" and ack.result is Result.DONE:
            return {"ok": True, **ack.detail["status"]}
        return {"ok": ack.result is not Result.REJECTED, **ack.as_dict()}

    return answer
