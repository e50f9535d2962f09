"""sd_notify and the watchdog over a real AF_UNIX datagram socket, as systemd's manager listens for it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.control import request
from agent.runtime import HEARTBEAT
from agent.systemd_notify import Notifier
from agent.version import VERSION
from tests.agent_harness import running_agent, write_config, write_schedule


@dataclass
class Listener:
    """A bound datagram socket standing in for systemd, and the NOTIFY_SOCKET value naming it."""

    sock: socket.socket
    address: str
    path: Path | None  # None for an abstract address

    def receive(self, timeout: float = 5.0) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096)

    def pending(self) -> list[bytes]:
        """Every datagram already queued: a local datagram is queued by the time sendto returns."""
        self.sock.setblocking(False)
        received = []
        try:
            while True:
                received.append(self.sock.recv(4096))
        except BlockingIOError:
            return received

    def vanish(self) -> None:
        self.sock.close()
        if self.path is not None:
            self.path.unlink()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path: Path | None = tmp_path / "notify"
        address = str(path)
        sock.bind(address)
    else:
        path = None
        address = f"@loa-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        sock.bind("\0" + address[1:])
    yield Listener(sock, address, path)
    sock.close()


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A test process may itself run under systemd: start from an environment without it."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_each_call_sends_exactly_its_datagram(listener: Listener, no_systemd: pytest.MonkeyPatch) -> None:
    no_systemd.setenv("NOTIFY_SOCKET", listener.address)
    notifier = Notifier()
    assert notifier.enabled
    notifier.ready("loa 1.2 running")
    notifier.status("playing bản tin sáng")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert listener.pending() == [
        b"READY=1\nSTATUS=loa 1.2 running",
        "STATUS=playing bản tin sáng".encode(),
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_an_explicit_address_wins_over_the_environment(
    listener: Listener, no_systemd: pytest.MonkeyPatch
) -> None:
    no_systemd.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    notifier = Notifier(listener.address)
    notifier.watchdog()
    notifier.close()
    assert listener.pending() == [b"WATCHDOG=1"]


@pytest.mark.parametrize("value", [None, ""])
def test_outside_systemd_every_call_is_a_no_op(value: str | None, no_systemd: pytest.MonkeyPatch) -> None:
    if value is not None:
        no_systemd.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("loa running")
    notifier.status("idle")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert not notifier.enabled


def test_a_vanished_socket_only_logs_a_warning(
    listener: Listener, no_systemd: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_systemd.setenv("NOTIFY_SOCKET", listener.address)
    notifier = Notifier()
    listener.vanish()  # systemd restarted, or the unit's socket went away
    with caplog.at_level(logging.WARNING, logger="agent.systemd_notify"):
        notifier.ready("loa running")
        notifier.watchdog()
    notifier.close()
    warnings = [r for r in caplog.records if r.name == "agent.systemd_notify"]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING and listener.address in r.getMessage() for r in warnings)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", "own", 15.0),  # ping at half the period systemd asked for
        ("30000000", None, 15.0),  # no WATCHDOG_PID: the watchdog is ours
        ("30000000", "foreign", None),  # meant for another process (e.g. our parent)
        (None, "own", None),  # no watchdog configured
        (None, None, None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, no_systemd: pytest.MonkeyPatch
) -> None:
    if usec is not None:
        no_systemd.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        no_systemd.setenv("WATCHDOG_PID", str(os.getpid() if pid == "own" else os.getppid()))
    assert Notifier("").watchdog_interval() == expected


def test_the_daemon_says_ready_once_up_and_stopping_on_stop(
    tmp_path: Path, no_systemd: pytest.MonkeyPatch
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    listener = Listener(sock, str(tmp_path / "notify"), tmp_path / "notify")
    no_systemd.setenv("NOTIFY_SOCKET", listener.address)  # run() builds its Notifier from the env
    write_schedule(tmp_path)
    try:
        with running_agent(write_config(tmp_path)) as box:
            before_ready: list[bytes] = []
            deadline = time.monotonic() + 10
            while not (before_ready and before_ready[-1].startswith(b"READY=1")):
                assert time.monotonic() < deadline, f"no READY=1 within 10 s: {before_ready}"
                before_ready.append(listener.receive())
            # READY=1 comes once the loop has made its first pass and the control socket is up
            assert box.agent.passes >= 1
            assert request(box.config.control.socket, "status")["running"] is True
        after_ready = listener.pending()  # the agent's thread has ended: everything is sent
    finally:
        sock.close()
    assert before_ready[-1] == f"READY=1\nSTATUS=loa {VERSION} running".encode()
    assert set(before_ready[:-1]) <= {b"WATCHDOG=1"}
    assert after_ready[-1] == b"STOPPING=1"
    assert set(after_ready[:-1]) <= {b"WATCHDOG=1"}  # no second READY=1, STOPPING=1 only once


def test_the_unit_watchdog_gives_the_loop_at_least_two_heartbeats() -> None:
    """The loop pings once a pass, at least every HEARTBEAT: systemd must allow two of them."""
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "loa-agent.service").read_text()
    (seconds,) = [line.split("=")[1] for line in unit.splitlines() if line.startswith("WatchdogSec=")]
    assert seconds.endswith("s")
    assert float(seconds[:-1]) / 2 >= 2 * HEARTBEAT


def test_the_watchdog_is_pinged_while_the_loop_runs_and_not_while_it_hangs(
    tmp_path: Path, no_systemd: pytest.MonkeyPatch
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    listener = Listener(sock, str(tmp_path / "notify"), tmp_path / "notify")
    no_systemd.setenv("NOTIFY_SOCKET", listener.address)
    write_schedule(tmp_path)
    try:
        with running_agent(write_config(tmp_path)) as box:
            while not listener.receive().startswith(b"READY=1"):
                pass
            for _ in range(3):  # each well within half of any sane WatchdogSec
                assert listener.receive(timeout=3 * HEARTBEAT) == b"WATCHDOG=1"
            # the main loop hangs in the middle of a pass (a stuck write, say)
            entered, release = threading.Event(), threading.Event()
            retry_writes = box.agent.store.retry_writes

            def stuck() -> None:
                entered.set()
                release.wait(30)
                retry_writes()

            box.agent.store.retry_writes = stuck  # type: ignore[method-assign]
            assert entered.wait(5 * HEARTBEAT)
            listener.pending()  # what the last healthy pass sent
            with pytest.raises(TimeoutError):  # systemd would now see no ping and restart it
                listener.receive(timeout=3 * HEARTBEAT)
            box.agent.store.retry_writes = retry_writes  # type: ignore[method-assign]
            release.set()
            assert listener.receive(timeout=3 * HEARTBEAT) == b"WATCHDOG=1"
    finally:
        sock.close()
