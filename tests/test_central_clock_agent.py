"""The real agent whose clock only the central server can vouch for (NTP blocked): a real HTTP
server signs the time, a real Mosquitto carries ``state`` and telemetry.  Nothing plays before the
answer; after it ``loa status``, ``state`` and telemetry say the clock is trusted from ``central``.
Also the config keys of telemetry and central time, with their file:line errors."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from paho.mqtt.enums import CallbackAPIVersion

from agent.central_time import CentralTime
from agent.clock_trust import ClockTrust
from agent.config import load_config_text
from agent.link import load_signing_keys
from agent.status import render
from agent.store import Store
from foundation.errors import ConfigError
from protocol.messages import decode_record, decode_state
from protocol.topics import Kind
from tests.agent_harness import running_agent, write_config, write_schedule
from tests.central_stand_in import DEVICE, central_section
from tests.mqtt_broker import Broker
from tests.time_server import TimeServer, run_time_server

BASE = "device: {id: xa-01-box}\ngpio: {amplifiers: [{name: zone-1, pin: 17}]}\n"


def test_the_central_keys_have_defaults_and_their_errors_name_file_and_line() -> None:
    central = "central:\n  mqtt_url: mqtt://127.0.0.1:1883\n  signing_public_key_files: [k.pub]\n"
    config = load_config_text(BASE + central, Path("/etc/loa/agent.yaml")).central
    assert config is not None and config.telemetry_interval == timedelta(seconds=60)
    assert (config.time_max_round_trip, config.time_tolerance) == (timedelta(seconds=2), timedelta(seconds=2))
    assert config.time_set_clock is True
    bad = (
        "  telemetry_interval: 0.5s\n  time_max_round_trip: 2\n  time_tolerance: 1h\n"
        "  time_set_clock: yes please\n  telemetry_intervall: 60s\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config_text(BASE + central + bad, Path("/etc/loa/agent.yaml"))
    assert [str(problem) for problem in error.value.problems] == [
        "/etc/loa/agent.yaml:6: central.telemetry_interval: '0.5s' is out of range: expected a duration"
        " with a unit (ms, s, min, h) from 1s to 1h, e.g. 1min",
        "/etc/loa/agent.yaml:7: central.time_max_round_trip: '2' has no unit: expected a duration with a"
        " unit (ms, s, min, h) from 100ms to 30s, e.g. 2s",
        "/etc/loa/agent.yaml:8: central.time_tolerance: '1h' is out of range: expected a duration with a"
        " unit (ms, s, min, h) from 100ms to 10min, e.g. 2s",
        "/etc/loa/agent.yaml:9: central.time_set_clock: 'yes please' is not true or false: expected true"
        " or false",
        "/etc/loa/agent.yaml:10: central.telemetry_intervall: unknown key"
        " (did you mean 'telemetry_interval'?)",
    ]


def test_the_daemon_asks_the_central_server_only_with_an_api_url_and_a_required_sync(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from agent.daemon import _clock_trust, signing_keys

    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "k.pub").write_bytes(pem)
    central = "central: {mqtt_url: 'mqtt://127.0.0.1:1', signing_public_key_files: [k.pub]"
    closed = "api_url: 'http://127.0.0.1:9/api'"  # nothing listens: never an answer to act on
    cases = {
        f"{central}, {closed}}}\nclock: {{require_sync: true}}\n": True,
        f"{central}, {closed}, time_set_clock: false}}\nclock: {{require_sync: true}}\n": True,
        f"{central}}}\nclock: {{require_sync: true}}\n": False,
        f"{central}, {closed}}}\nclock: {{require_sync: false}}\n": False,
    }
    for text, asks in cases.items():
        config = load_config_text(BASE + text, tmp_path / "agent.yaml")
        with ExitStack() as stack:
            clock = _clock_trust(config, stack, signing_keys(config))
            assert (clock.central is not None) == asks, text
            if clock.central is not None:
                assert clock.central.set_clock == ("time_set_clock: false" not in text)
                assert clock.central.keys and clock.central.api_url == "http://127.0.0.1:9/api"


@pytest.fixture
def server(key: Ed25519PrivateKey) -> Iterator[TimeServer]:
    yield from run_time_server(key)


def refuse_to_set(moment: object) -> None:
    raise AssertionError("the test must never set this machine's clock")


def test_an_agent_without_ntp_trusts_the_clock_from_the_central_server(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, server: TimeServer
) -> None:
    write_schedule(tmp_path)
    extra = central_section(
        broker, api_url=f"'{server.api_url}'", telemetry_interval="1s", time_set_clock="false"
    )
    path = write_config(tmp_path, require_sync=True, extra=extra)
    config = load_config_text(path.read_text(encoding="utf-8"), path)
    assert config.central is not None and config.central.api_url is not None
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    listener = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="test-clock-central", protocol=mqtt.MQTTv311
    )
    listener.on_message = lambda _c, _u, m: got.put((m.topic, bytes(m.payload)))
    listener.on_connect = lambda c, *_: c.subscribe(f"loa/v1/{DEVICE}/#", qos=1)
    listener.connect("127.0.0.1", broker.port)
    listener.loop_start()
    server.mode = "foreign-key"  # first a forged answer: the clock must stay untrusted
    central = CentralTime(
        server.api_url, DEVICE, load_signing_keys(config.central, path),
        max_round_trip=config.central.time_max_round_trip, tolerance=config.central.time_tolerance,
        set_clock=False, ntp_synced=lambda: False, step=refuse_to_set,
    )  # fmt: skip
    clock = ClockTrust(True, kernel_synced=lambda: False, sync_markers=(), agent_marker=None, central=central)
    try:
        with running_agent(path, clock=clock) as box:
            assert central.ask_once() == "bad_signature"
            box.wait_passes(2, 10)
            status = box.agent.status()
            assert status["clock"]["trusted"] is False and "bad_signature" in status["clock"]["reason"]
            server.mode = "good"
            assert central.ask_once() == "trusted"
            box.wait_for(lambda: box.agent.status()["clock"]["trusted"] is True, 10)
            status = box.agent.status()
            assert status["clock"]["source"] == "central"
            shown = render(status, box.config.device.timezone)
            assert "clock    trusted (the central server's signed time: off by " in shown
            state = wait_message(got, "state", lambda p: decode_state(p).clock_source == "central")
            assert decode_state(state).clock_trusted
            sample = wait_message(got, "telemetry", lambda p: _data(p).get("clock_source") == "central")
            assert _data(sample)["clock_trusted"] is True and "uptime_s" in _data(sample)
            box.wait_passes(2, 10)
        store = Store.open_readonly(box.config.storage.dir)
        try:
            kinds = [row["kind"] for row in reversed(store.recent_events(50))]
        finally:
            store.close()
        assert "clock.central_refused" in kinds and "clock.trusted" in kinds
        assert kinds.index("clock.central_refused") < kinds.index("clock.trusted")
    finally:
        listener.disconnect()
        listener.loop_stop()


def _data(payload: bytes) -> dict[str, object]:
    return dict(decode_record(Kind.TELEMETRY, payload, DEVICE).data)


def wait_message(
    got: queue.Queue[tuple[str, bytes]], kind: str, accept: object, timeout: float = 15
) -> bytes:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload = got.get(timeout=left)
        except queue.Empty:
            break
        if topic.endswith(f"/{kind}") and accept(payload):  # type: ignore[operator]
            return payload
    raise AssertionError(f"no {kind} message as expected within {timeout} s")
