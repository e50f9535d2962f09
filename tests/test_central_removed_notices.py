"""A box removed from service leaves nothing retained on the real embedded Mosquitto, neither its
manifest notice nor the ``status`` and ``state`` it retained itself: the ``device remove`` command
clears them when the broker runs, ``serve`` clears them when it starts after a removal made while
the broker was down, and a rebuild racing a removal clears the notice it published.  A box in
service keeps its own."""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central import db, manifests, registry
from central.audio_store import AudioStore
from central.broker import CENTRAL_USER, BrokerSupervisor, central_endpoint, central_password
from central.config import CentralServerConfig, load_central_config
from central.context import Central
from central.ingest import Ingestor
from central.mqtt_link import CentralLink, Incoming
from central.signing import load_signing_key
from central.tts import EspeakNg
from tests.central_harness import RecordingPublisher, initialized, loa_central, make_central
from tests.mqtt_broker import free_port
from tests.test_central_broker import wait_listening
from tests.test_central_end_to_end import Server

NOTICE_1 = b'{"v": 1, "version": "1"}'
ONLINE = b'{"v": 1, "status": "online", "session": 42, "at": "2026-11-27T00:00:00.000Z"}'
OFFLINE = b'{"v": 1, "status": "offline", "session": 42, "at": "2026-11-27T00:00:00.000Z"}'
STATE = (b'{"v": 1, "session": 42, "at": "2026-11-27T00:00:01.000Z", "playing": null, "relays_on": [], '
         b'"volume": 80, "schedules": {}, "clock": {"trusted": true, "source": "ntp"}}')  # fmt: skip


def retained_on(config: CentralServerConfig, topic: str) -> list[bytes]:
    """The retained messages a fresh subscriber to ``topic`` is sent (as the central user).

    Proof of absence without sleeping: after subscribing to ``topic`` the probe subscribes to a
    marker it left retained itself; the broker sends one client's messages in order, so whatever
    was retained on ``topic`` has arrived once the marker does."""
    marker = f"loa/probe/{uuid.uuid4().hex}"
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    up: queue.Queue[str] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{marker[-8:]}",
                         protocol=mqtt.MQTTv311)  # fmt: skip
    client.username_pw_set(CENTRAL_USER, central_password(config))
    client.on_connect = lambda _c, _u, _f, reason, _p: up.put(str(reason))
    client.on_message = lambda _c, _u, message: got.put((message.topic, bytes(message.payload)))
    client.connect("127.0.0.1", config.mqtt.listen_port)
    client.loop_start()
    try:
        assert up.get(timeout=10) == "Success"
        client.subscribe(topic, qos=1)
        client.publish(marker, "marker", qos=1, retain=True).wait_for_publish(5)
        client.subscribe(marker, qos=1)
        seen = []
        while (message := got.get(timeout=10))[0] != marker:
            seen.append(message)
        client.publish(marker, "", qos=1, retain=True).wait_for_publish(5)  # leave nothing behind
    finally:
        client.disconnect()
        client.loop_stop()
    assert all(seen_topic == topic for seen_topic, _ in seen), seen
    return [payload for _, payload in seen]


def notice(device_id: str) -> str:
    return manifests.notice_topic(device_id)


def status(device_id: str) -> str:
    return f"loa/v1/{device_id}/status"


def state(device_id: str) -> str:
    return f"loa/v1/{device_id}/state"


class Box:
    """A box on the broker as the agent is: its own account, ``offline`` as its retained last will,
    ``online`` and its state retained; connected until :meth:`close` (or until the broker cuts it)."""

    def __init__(self, config: CentralServerConfig, device_id: str, directory: Path) -> None:
        password = (directory / device_id / "mqtt-password").read_text(encoding="utf-8").strip()
        up: queue.Queue[str] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(device_id, password)
        self.client.will_set(status(device_id), OFFLINE, qos=1, retain=True)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: up.put(str(reason))
        self.client.connect("127.0.0.1", config.mqtt.listen_port)
        self.client.loop_start()
        assert up.get(timeout=10) == "Success"
        for topic, payload in ((status(device_id), ONLINE), (state(device_id), STATE)):
            self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def setup(directory: Path, http_port: int = 8080) -> CentralServerConfig:
    """An initialized central server with boxes xa-a-01 and xa-a-02 (commune xa-a) and xa-b-01 (xa-b)."""
    path = initialized(directory, http_port=http_port, mqtt_port=free_port())
    for device, commune in (("xa-a-01", "xa-a"), ("xa-a-02", "xa-a"), ("xa-b-01", "xa-b")):
        loa_central(path, "device", "add", device, "--province", "tinh", "--commune", commune,
                    "--out", str(directory / device))  # fmt: skip
    return load_central_config(path)


@contextmanager
def running_broker(config: CentralServerConfig) -> Iterator[BrokerSupervisor]:
    supervisor = BrokerSupervisor(config)
    supervisor.start()
    try:
        wait_listening(config.mqtt.listen_port)
        yield supervisor
    finally:
        supervisor.stop()


def publish_notices(config: CentralServerConfig, device_ids: list[str]) -> None:
    """New manifests for ``device_ids`` as the server makes them: signed, stored, notice retained,
    through a real link to the running broker."""
    at = central_endpoint(config)
    link = CentralLink(at.host, at.port, username=at.username, password=at.password)
    link.start()
    engine = db.open_engine(config.database_url)
    try:
        assert link.connected.wait(10)
        central = Central(config, engine, load_signing_key(config.signing_key_file), link,
                          AudioStore(config.audio_dir, config.audio_max_bytes), EspeakNg("vi"))  # fmt: skip
        assert manifests.rebuild(central, device_ids) == dict.fromkeys(device_ids, 1)
    finally:
        link.stop()
        engine.dispose()


def until(done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for what must happen: asks ``done`` again each time the last answer came back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
    raise AssertionError("never happened")


def test_device_remove_clears_the_boxs_retained_messages_and_only_its_own(tmp_path: Path) -> None:
    config = setup(tmp_path)
    with running_broker(config):
        publish_notices(config, ["xa-a-01", "xa-a-02"])
        boxes = [Box(config, device, tmp_path) for device in ("xa-a-01", "xa-a-02", "xa-b-01")]
        try:
            for device in ("xa-a-01", "xa-b-01"):  # what removal must clear
                assert retained_on(config, status(device)) == [ONLINE]
                assert retained_on(config, state(device)) == [STATE]
            assert retained_on(config, notice("xa-a-01")) == [NOTICE_1]
            # xa-a-01 is still connected: the broker cuts it off as it takes the removal
            done = loa_central(config.source, "device", "remove", "xa-a-01")
            assert "its retained status, state and manifest notice are cleared from the broker" in done.stdout
            for topic in (notice("xa-a-01"), status("xa-a-01"), state("xa-a-01")):
                assert retained_on(config, topic) == [], topic
            assert retained_on(config, notice("xa-a-02")) == [NOTICE_1]
            assert retained_on(config, status("xa-a-02")) == [ONLINE]  # in service: its own stay
            assert retained_on(config, state("xa-a-02")) == [STATE]
            again = loa_central(config.source, "device", "remove", "xa-a-01")  # idempotent
            assert "cleared from the broker" in again.stdout and retained_on(config, status("xa-a-01")) == []
            never = loa_central(config.source, "device", "remove", "xa-b-01")
            assert ("its retained status and state are cleared from the broker (it never had a manifest "
                    "notice)") in never.stdout  # fmt: skip
            assert retained_on(config, status("xa-b-01")) == retained_on(config, state("xa-b-01")) == []
        finally:
            for box in boxes:
                box.close()


def test_messages_left_by_a_removal_while_the_broker_was_down_are_cleared_when_serve_starts(
    tmp_path: Path,
) -> None:
    http_port = free_port()
    config = setup(tmp_path, http_port=http_port)
    with running_broker(config):
        publish_notices(config, ["xa-a-01", "xa-a-02"])
        for device in ("xa-a-01", "xa-a-02"):
            Box(config, device, tmp_path).close()  # a clean goodbye: its online and state stay retained
    # the broker stopped (its retained messages saved in its store): the command cannot reach it
    done = loa_central(config.source, "device", "remove", "xa-a-01")
    assert ("the broker is not running: loa-central serve clears its retained status, state and manifest "
            "notice") in done.stdout  # fmt: skip
    server = Server(config.source, http_port, config.mqtt.listen_port)
    try:
        until(lambda: retained_on(config, notice("xa-a-01")) == [])
        until(lambda: retained_on(config, status("xa-a-01")) == retained_on(config, state("xa-a-01")) == [])
        # the broker's store did bring the messages back: the box still in service has its own
        assert retained_on(config, notice("xa-a-02")) == [NOTICE_1]
        assert retained_on(config, status("xa-a-02")) == [ONLINE]
        assert retained_on(config, state("xa-a-02")) == [STATE]
    finally:
        server.stop()
    log = server.log.read_text()
    assert "cleared the retained manifest notices of 1 removed boxes" in log
    assert "cleared the retained status and state of 1 removed boxes" in log


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    made = make_central(tmp_path, RecordingPublisher())
    yield made
    made.engine.dispose()


def test_a_rebuild_that_raced_a_removal_clears_the_notice_it_sent(central: Central) -> None:
    registry.remove_device(central.engine, "xa-a-01")  # after the bulletin picked its boxes, say
    manifests.rebuild(central, ["xa-a-01", "xa-a-02"])
    assert isinstance(central.publisher, RecordingPublisher)
    assert [(topic, payload) for topic, payload, _ in central.publisher.sent] == [
        (notice("xa-a-01"), '{"v": 1, "version": "1"}'),
        (notice("xa-a-02"), '{"v": 1, "version": "1"}'),
        (notice("xa-a-01"), ""),
    ]
    assert all(retain for *_, retain in central.publisher.sent)


def test_the_clearing_of_a_removed_boxs_status_coming_back_to_ingest_is_dropped_quietly(
    central: Central, caplog: pytest.LogCaptureFixture
) -> None:
    registry.remove_device(central.engine, "xa-a-01")
    ingestor = Ingestor(central.engine, lambda: datetime.now(UTC))
    assert not ingestor.handle(Incoming(status("xa-a-01"), b""))  # the sweep's own, sent to the server too
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert not ingestor.handle(Incoming(status("xa-a-01"), ONLINE))  # what the box itself said: noted
    assert [record.getMessage() for record in caplog.records] == [
        "dropped a message on loa/v1/xa-a-01/status: box xa-a-01 was removed from service on "
        f"{registry.removed_at(central.engine, 'xa-a-01'):%Y-%m-%d}"
    ]
