"""The control socket: real Unix socket, owner-and-group permissions, clear errors, and the command
handler behind it (ids, outcomes, duplicates)."""

from __future__ import annotations

import os
import queue
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.commands import CommandHandler, Execute, Result
from agent.control import ControlServer, front_end, request
from foundation.errors import NotRunningError

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def test_request_and_reply(tmp_path: Path) -> None:
    path = tmp_path / "run" / "agent.sock"
    server = ControlServer(path, lambda req: {"ok": True, "state": "running", "echo": req.get("x")})
    server.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert request(path, "status", x=3) == {"ok": True, "state": "running", "echo": 3}
    finally:
        server.stop()
    assert not path.exists()


# A client as another user runs a system Python: the suite's own may live where that user cannot go.
CLIENT = """
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(10)
    sock.connect(sys.argv[1])
    sock.sendall(b'{"cmd": "status"}\\n')
    print(sock.makefile().readline())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system Python for the client")
@pytest.mark.parametrize(("in_group", "connects"), [(True, True), (False, False)])
def test_a_member_of_the_socket_group_connects_and_anyone_else_is_refused(
    in_group: bool, connects: bool
) -> None:
    """As the unit runs it: the socket's group is the agent's (``loa``, the crew); others are out."""
    with tempfile.TemporaryDirectory(prefix="loa-control-") as directory:
        os.chmod(directory, 0o755)  # the directory is not what is under test
        path = Path(directory) / "agent.sock"
        server = ControlServer(path, lambda req: {"ok": True, "state": "running"})
        server.start()
        try:
            result = subprocess.run(
                ["/usr/bin/python3", "-c", CLIENT, str(path)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                cwd="/",
                user=NOBODY,
                group=NOBODY,
                extra_groups=[path.stat().st_gid] if in_group else [],
            )
        finally:
            server.stop()
    if connects:
        assert result.returncode == 0, result.stderr
        assert '"state": "running"' in result.stdout, result.stdout
    else:
        assert result.returncode != 0
        assert "PermissionError" in result.stderr, result.stderr


def test_handler_failure_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if req["cmd"] == "broken":
            raise RuntimeError("boom")
        return {"ok": True, "fine": True}

    server = ControlServer(path, answer)
    server.start()
    try:
        assert "boom" in request(path, "broken")["error"]
        assert request(path, "status")["fine"] is True
    finally:
        server.stop()


def test_no_daemon_is_not_running_error(tmp_path: Path) -> None:
    with pytest.raises(NotRunningError, match="not running"):
        request(tmp_path / "missing.sock", "status")


class Loop:
    """Stands in for the agent's main loop: resolves each command it is handed."""

    def __init__(self, result: Result, reason: str = "") -> None:
        self.inbox: queue.Queue[object] = queue.Queue()
        self.seen: list[Execute] = []
        self._result, self._reason = result, reason
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (event := self.inbox.get()) is not None:
            assert isinstance(event, Execute)
            self.seen.append(event)
            event.pending.resolve(self._result, self._reason)

    def close(self) -> None:
        self.inbox.put(None)
        self._thread.join(2)


@pytest.fixture
def socket_with_handler(tmp_path: Path) -> Any:
    loop = Loop(Result.DONE)
    handler = CommandHandler(
        loop.inbox.put, zones=frozenset({"zone-1"}), status=lambda: {"state": "x"}, wait=2
    )
    server = ControlServer(tmp_path / "agent.sock", front_end(handler))
    server.start()
    yield tmp_path / "agent.sock", loop
    server.stop()
    loop.close()


def test_every_request_gets_an_id_and_an_outcome(socket_with_handler: Any, tmp_path: Path) -> None:
    path, loop = socket_with_handler
    assert request(path, "status") == {"ok": True, "state": "x"}
    reply = request(path, "reload")
    assert reply["ok"] and reply["result"] == "done" and reply["id"].startswith("local-")
    unknown = request(path, "explode")
    assert (
        unknown["ok"] is False and unknown["result"] == "rejected" and "unknown command" in unknown["reason"]
    )
    assert [event.pending.command.name for event in loop.seen] == ["reload"]


def test_play_is_checked_before_the_agent_sees_it(socket_with_handler: Any, tmp_path: Path) -> None:
    path, loop = socket_with_handler
    missing = request(path, "play", file=str(tmp_path / "nope.wav"))
    assert missing["result"] == "rejected" and "file not found" in missing["reason"]
    relative = request(path, "play", file="a.wav")
    assert relative["result"] == "rejected" and "absolute path" in relative["reason"]
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    zone = request(path, "play", file=str(audio), zones=["zone-9"])
    assert zone["result"] == "rejected" and "zone-9" in zone["reason"]
    level = request(path, "play", file=str(audio), level="urgent")
    assert level["result"] == "rejected" and "urgent" in level["reason"]
    assert loop.seen == []  # nothing refused ever reached the agent
    good = request(path, "play", file=str(audio), level="emergency", zones=["zone-1"])
    assert good["result"] == "done"
    assert loop.seen[0].pending.command.params == {
        "file": str(audio),
        "level": "emergency",
        "zones": ["zone-1"],
        "volume": None,
        "repeat": 1,
        "sha256": None,
    }


def test_play_volume_repeat_and_sha256_are_checked(socket_with_handler: Any, tmp_path: Path) -> None:
    path, loop = socket_with_handler
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    for field, value, words in (
        ("volume", 101, "'volume' must be a whole number from 0 to 100"),
        ("repeat", 0, "'repeat' must be a whole number from 1 to 10"),
        ("repeat", 11, "'repeat' must be a whole number from 1 to 10"),
        ("sha256", "AB" * 32, "'sha256' must be 64 lowercase hex digits"),
    ):
        refused = request(path, "play", file=str(audio), **{field: value})
        assert refused["result"] == "rejected" and refused["reason"] == words
    assert loop.seen == []
    good = request(path, "play", file=str(audio), volume=0, repeat=10, sha256="ab" * 32)
    assert good["result"] == "done"
    params = loop.seen[0].pending.command.params
    assert (params["volume"], params["repeat"], params["sha256"]) == (0, 10, "ab" * 32)


def test_a_repeated_id_is_a_duplicate_with_no_effect(socket_with_handler: Any) -> None:
    path, loop = socket_with_handler
    first = request(path, "reload", id="cmd-1")
    again = request(path, "reload", id="cmd-1")
    assert first["result"] == "done" and again["result"] == "duplicate" and again["id"] == "cmd-1"
    assert len(loop.seen) == 1


def test_an_answer_that_takes_long_is_accepted_not_lost() -> None:
    inbox: queue.Queue[object] = queue.Queue()
    handler = CommandHandler(inbox.put, zones=frozenset(), status=dict, wait=0.2)
    ack = handler.submit("reload", {}, origin="local")
    assert ack.result is Result.ACCEPTED
    event = inbox.get_nowait()
    assert isinstance(event, Execute) and event.pending.command.id == ack.id
