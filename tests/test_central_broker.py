"""The embedded Mosquitto with its generated password file and ACL, the real broker: a box reads
only its own and its groups' command topics and writes only its own topics, never a command."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from central import broker
from central.broker import CENTRAL_USER, BrokerSupervisor, central_password
from central.config import CentralServerConfig, load_central_config
from central.mqtt_link import CentralLink
from tests.central_harness import MqttClient as Client
from tests.central_harness import initialized, loa_central
from tests.mqtt_broker import free_port


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[CentralServerConfig, dict[str, str]]]:
    yield from _central(tmp_path)


def _central(tmp_path: Path, supervisors: list[BrokerSupervisor] | None = None
             ) -> Iterator[tuple[CentralServerConfig, dict[str, str]]]:  # fmt: skip
    config_path = initialized(tmp_path, mqtt_port=free_port())
    passwords = {}
    for device, commune in (("xa-a-01", "xa-a"), ("xa-a-02", "xa-a"), ("xa-b-01", "xa-b")):
        out = tmp_path / device
        loa_central(config_path, "device", "add", device, "--province", "tinh", "--commune", commune,
                    "--out", str(out))  # fmt: skip
        passwords[device] = (out / "mqtt-password").read_text(encoding="utf-8").strip()
    config = load_central_config(config_path)
    supervisor = BrokerSupervisor(config)
    supervisor.start()
    if supervisors is not None:
        supervisors.append(supervisor)
    wait_listening(config.mqtt.listen_port)
    try:
        yield config, passwords
    finally:
        supervisor.stop()


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the broker did not listen on {port}")


def test_a_box_writes_only_its_own_topics(central: tuple[CentralServerConfig, dict[str, str]]) -> None:
    config, passwords = central
    port = config.mqtt.listen_port
    watcher = Client(port, CENTRAL_USER, central_password(config))
    watcher.subscribe("loa/#")
    box = Client(port, "xa-a-01", passwords["xa-a-01"])
    forbidden = ["loa/v1/xa-a-02/state", "loa/v1/xa-b-01/playlog", "loa/v1/xa-a-01/cmd", "loa/v1/xa-a-02/cmd",
                 "loa/v1/group/xa-a/cmd", "loa/v1/group/tinh/cmd", "loa/v1/xa-a-01/manifest",
                 "loa/other"]  # fmt: skip
    for topic in forbidden:
        box.publish(topic, "forged")
    box.publish("loa/v1/xa-a-01/state", "mine")  # after all of them: the broker keeps one client's order
    assert watcher.next() == ("loa/v1/xa-a-01/state", b"mine")
    for kind in ("status", "telemetry", "events", "playlog", "ack"):
        box.publish(f"loa/v1/xa-a-01/{kind}", kind)
        assert watcher.next() == (f"loa/v1/xa-a-01/{kind}", kind.encode())
    box.close()
    watcher.close()


def test_a_box_reads_only_its_own_and_its_groups_commands(
    central: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    config, passwords = central
    port = config.mqtt.listen_port
    sender = Client(port, CENTRAL_USER, central_password(config))
    box = Client(port, "xa-a-01", passwords["xa-a-01"])
    box.subscribe("loa/#", "loa/v1/xa-a-02/cmd", "loa/v1/group/xa-b/cmd")  # asks for more than it may read
    for topic in ("loa/v1/xa-a-02/cmd", "loa/v1/xa-b-01/cmd", "loa/v1/group/xa-b/cmd",
                  "loa/v1/xa-a-02/status",
                  "loa/v1/xa-a-01/cmd", "loa/v1/group/xa-a/cmd", "loa/v1/group/tinh/cmd",
                  "loa/v1/group/tinh/manifest", "loa/v1/xa-a-01/manifest"):  # fmt: skip
        sender.publish(topic, "x")
    received = [box.next()[0] for _ in range(5)]
    assert received == ["loa/v1/xa-a-01/cmd", "loa/v1/group/xa-a/cmd", "loa/v1/group/tinh/cmd",
                        "loa/v1/group/tinh/manifest", "loa/v1/xa-a-01/manifest"]  # fmt: skip
    box.close()
    sender.close()


def test_a_wrong_password_or_an_unknown_user_is_refused(
    central: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    config, passwords = central
    for user, password in (("xa-a-01", passwords["xa-a-02"]), ("nobody-01", "x"), (CENTRAL_USER, "guess")):
        with pytest.raises(AssertionError):
            Client(config.mqtt.listen_port, user, password)


def test_a_box_added_while_the_broker_runs_can_connect_at_once(
    central: tuple[CentralServerConfig, dict[str, str]], tmp_path: Path
) -> None:
    config, _ = central
    out = tmp_path / "new"
    loa_central(config.source, "device", "add", "xa-c-01", "--province", "tinh", "--commune", "xa-c",
                "--out", str(out))  # fmt: skip
    password = (out / "mqtt-password").read_text(encoding="utf-8").strip()
    deadline = time.monotonic() + 10
    while True:  # SIGHUP is asynchronous: the broker rereads its files a moment later
        try:
            Client(config.mqtt.listen_port, "xa-c-01", password).close()
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_supervisor_starts_a_dead_broker_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "RESTART_DELAY", 0.1)
    supervisors: list[BrokerSupervisor] = []
    running = _central(tmp_path, supervisors)
    config, passwords = next(running)
    [supervisor] = supervisors
    first = supervisor.process
    assert first is not None
    first.kill()
    deadline = time.monotonic() + 10
    while supervisor.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisor.restarts == 1 and supervisor.process is not first
    wait_listening(config.mqtt.listen_port)
    Client(config.mqtt.listen_port, "xa-a-01", passwords["xa-a-01"]).close()
    pid = (config.broker_dir / "mosquitto.pid").read_text(encoding="ascii").strip()
    assert supervisor.process is not None and pid == str(supervisor.process.pid)
    running.close()  # stops it: nothing is started again after stop
    assert supervisor.process.poll() is not None and not (config.broker_dir / "mosquitto.pid").exists()


def _link(config: CentralServerConfig) -> CentralLink:
    link = CentralLink("127.0.0.1", config.mqtt.listen_port, username=CENTRAL_USER,
                       password=central_password(config))  # fmt: skip
    link.start()
    assert link.connected.wait(10)
    return link


def test_what_boxes_send_while_the_central_server_is_away_waits_for_it_whole(
    central: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    """Its session holds more than Mosquitto's default 1000 queued messages: a thousand boxes' outboxes
    after an outage, which the broker would otherwise drop although each box took them as delivered."""
    config, passwords = central
    _link(config).stop()  # its persistent session now collects what it is subscribed to
    box = Client(config.mqtt.listen_port, "xa-a-01", passwords["xa-a-01"])
    sent = [box.client.publish("loa/v1/xa-a-01/events", f"{n}", qos=1) for n in range(3000)]
    sent[-1].wait_for_publish(30)
    assert all(info.is_published() for info in sent)
    box.close()
    link = _link(config)
    received: list[bytes] = []
    try:
        while len(received) < 3000:
            incoming = link.inbox.get(timeout=10)
            received.append(incoming.payload)
            link.done([incoming])  # stored: the broker's in-flight window moves on
    except queue.Empty:
        pass
    link.stop()
    assert received == [f"{n}".encode() for n in range(3000)]


def test_the_central_link_sends_many_commands_without_waiting_between_them(
    central: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    config, passwords = central
    box = Client(config.mqtt.listen_port, "xa-a-01", passwords["xa-a-01"])
    box.subscribe("loa/v1/xa-a-01/cmd")
    link = _link(config)
    try:
        taken = link.publish_all([("loa/v1/xa-a-01/cmd", f"token-{n}") for n in range(500)], timeout=30)
        assert taken == [True] * 500
        assert [box.next()[1] for _ in range(500)] == [f"token-{n}".encode() for n in range(500)]
    finally:
        link.stop()
        box.close()


def test_what_the_central_server_received_but_did_not_store_comes_again_after_it_restarts(
    central: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    """A crash between receiving a record and storing it loses nothing: the record is acknowledged
    to the broker only once stored, so the broker sends it again to the next connection."""
    config, passwords = central
    _link(config).stop()  # its persistent session, subscribed, now exists
    box = Client(config.mqtt.listen_port, "xa-a-01", passwords["xa-a-01"])
    link = _link(config)
    sent = [box.client.publish("loa/v1/xa-a-01/playlog", f"record-{n}", qos=1) for n in range(5)]
    sent[-1].wait_for_publish(10)
    first = [link.inbox.get(timeout=10) for _ in range(5)]
    link.stop()  # gone before storing any of them (a crash: none was acknowledged)
    again = _link(config)
    try:
        resent = [again.inbox.get(timeout=10) for _ in range(5)]
        assert again.done(resent) == 5
    finally:
        again.stop()
    third = _link(config)
    try:
        with pytest.raises(queue.Empty):
            third.inbox.get(timeout=1.5)  # acknowledged once stored: not sent again
    finally:
        third.stop()
        box.close()
    expected = [f"record-{n}".encode() for n in range(5)]
    assert [m.payload for m in first] == [m.payload for m in resent] == expected
