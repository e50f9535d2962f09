"""The control socket: real Unix socket, root-only permissions, clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.control import ControlServer, request
from foundation.errors import NotRunningError


def test_request_and_reply(tmp_path: Path) -> None:
    path = tmp_path / "run" / "agent.sock"
    server = ControlServer(path, {"status": lambda req: {"state": "running", "echo": req.get("x")}})
    server.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert request(path, "status", x=3) == {"ok": True, "state": "running", "echo": 3}
        reply = request(path, "explode")
        assert reply["ok"] is False and "unknown command" in reply["error"]
    finally:
        server.stop()
    assert not path.exists()


def test_handler_failure_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"

    def broken(_req: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("boom")

    server = ControlServer(path, {"broken": broken, "status": lambda _r: {"fine": True}})
    server.start()
    try:
        assert "boom" in request(path, "broken")["error"]
        assert request(path, "status")["fine"] is True
    finally:
        server.stop()


def test_no_daemon_is_not_running_error(tmp_path: Path) -> None:
    with pytest.raises(NotRunningError, match="not running"):
        request(tmp_path / "missing.sock", "status")
