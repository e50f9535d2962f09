"""The local control socket: how ``loa`` talks to the running daemon.

A Unix stream socket (``control.socket``, mode 0600: root only).  One request per connection:
the client sends one JSON object on a line, ``{"cmd": "play", "file": "/srv/a.wav"}``, and reads
one JSON object back: the command's answer (``agent.commands.Ack``: ``id``, ``result``, ``reason``)
with ``ok`` false when it was rejected; ``status`` answers the status snapshot itself.  The server
thread never touches agent state: every request goes through the command handler, the agent's one
front door.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from agent.commands import CommandHandler, Result
from foundation.errors import NotRunningError

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]  # the request -> the reply (without "ok")
MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves control requests on a Unix socket from its own thread."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()
        logger.info("control socket listening on %s", self.path)

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
            with conn:
                conn.settimeout(2.0)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            request = json.loads(_read_line(conn))
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply: dict[str, Any] = self._handler(request)
        except (ValueError, OSError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not kill the socket thread
            logger.exception("control request failed")
            reply = {"ok": False, "error": f"internal error: {exc}"}
        with suppress(OSError):
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.decode("utf-8")


def request(path: Path, cmd: str, timeout: float = 3.0, **params: Any) -> dict[str, Any]:
    """Send one request to the daemon; raise NotRunningError when nobody answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps({"cmd": cmd, **params}).encode() + b"\n")
        reply = json.loads(_read_line(sock) or "null")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotRunningError(f"the agent is not running (no answer on {path})") from exc
    except PermissionError as exc:
        raise NotRunningError(f"permission denied on {path}: run loa as root") from exc
    except (OSError, ValueError) as exc:
        raise NotRunningError(f"the agent did not answer on {path}: {exc}") from exc
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise NotRunningError(f"the agent sent no answer on {path}")
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
