"""SerialTuner (real pyserial) against a fake AT tuner module on a pseudo-terminal."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from fm_receiver.fake_tuner import FakeTunerDevice
from fm_receiver.iq_source import FmEvent
from fm_receiver.quality import CarrierDetector
from fm_receiver.serial_tuner import SerialTuner, TunerError
from fm_receiver.source_health import OK, SourceHealth
from fm_receiver.tuner_receiver import TunerReceiver


@pytest.fixture
def device() -> Iterator[FakeTunerDevice]:
    fake = FakeTunerDevice(rssi=48, snr=31).start()
    yield fake
    fake.stop()


@pytest.fixture
def tuner(device: FakeTunerDevice) -> Iterator[SerialTuner]:
    client = SerialTuner(device.port, timeout_s=0.3, retries=1)
    client.open()
    yield client
    client.close()


def test_commands_reach_the_module(tuner: SerialTuner, device: FakeTunerDevice) -> None:
    tuner.tune(99.1e6)
    tuner.set_mute(True)
    tuner.set_volume(12)
    tuner.set_deemphasis(50)
    assert (device.frequency_units, device.muted, device.volume, device.deemphasis_us) == (9910, True, 12, 50)
    assert tuner.frequency_hz() == 99_100_000
    assert (tuner.rssi(), tuner.snr()) == (48, 31)
    assert device.received == [
        "AT",
        "AT+FREQ=9910",
        "AT+MUTE=1",
        "AT+VOL=12",
        "AT+DEEMPH=50",
        "AT+FREQ?",
        "AT+RSSI?",
        "AT+SNR?",
    ]


def test_refused_and_invalid_commands(tuner: SerialTuner, device: FakeTunerDevice) -> None:
    with pytest.raises(TunerError, match=r"'AT\+BOGUS' refused"):
        tuner.command("AT+BOGUS")
    with pytest.raises(TunerError, match="outside the FM band"):
        tuner.tune(120e6)
    with pytest.raises(TunerError, match="volume 16"):
        tuner.set_volume(16)
    assert device.received == ["AT", "AT+BOGUS"]  # invalid values never left the host


def test_a_lost_answer_is_retried(tuner: SerialTuner, device: FakeTunerDevice) -> None:
    device.ignore_commands = 1
    assert tuner.rssi() == 48
    assert device.received[-2:] == ["AT+RSSI?", "AT+RSSI?"]


def test_a_silent_module_fails_after_the_retries(tuner: SerialTuner, device: FakeTunerDevice) -> None:
    device.ignore_commands = 5
    with pytest.raises(TunerError, match=r"no answer to 'AT\+RSSI\?' after 2 attempts"):
        tuner.rssi()


def test_opening_a_missing_port_fails_cleanly() -> None:
    with pytest.raises(TunerError) as caught:
        SerialTuner("/dev/nonexistent-tuner").open()
    assert caught.value.state == "missing"
    assert str(caught.value) == "FM tuner port /dev/nonexistent-tuner not found - check the USB-serial cable"


def test_a_module_that_does_not_answer_fails_with_advice(device: FakeTunerDevice) -> None:
    device.ignore_commands = 10**6
    with pytest.raises(TunerError) as caught:
        SerialTuner(device.port, timeout_s=0.1, retries=1).open()
    assert caught.value.state == "failed"
    assert str(caught.value) == (
        f"FM tuner on {device.port} does not answer - check its power, its wiring and the baud rate (9600)"
    )
    assert device.received == ["AT", "AT"]


def test_tuner_receiver_reports_carrier_and_mutes_without_it(device: FakeTunerDevice) -> None:
    events: list[FmEvent] = []
    changed = threading.Event()

    def sink(event: FmEvent) -> None:
        events.append(event)
        changed.set()

    detector = CarrierDetector(
        open_snr_db=20, close_snr_db=15, min_level=25, open_hold_s=0.1, close_hold_s=0.1
    )
    receiver = TunerReceiver(SerialTuner(device.port, timeout_s=0.3), 99.1e6, detector, sink, poll_s=0.05)
    receiver.start()
    try:
        assert changed.wait(5.0)
        assert events[0].kind == "fm.carrier_present" and receiver.present()
        assert not device.muted and device.frequency_units == 9910 and device.deemphasis_us == 50
        changed.clear()
        device.rssi, device.snr = 12, 3  # the station goes off air
        assert changed.wait(5.0)
        assert events[1].kind == "fm.carrier_lost" and events[1].detail["rssi_dbuv"] == 12
        assert device.muted and receiver.status()["carrier"] is False
    finally:
        receiver.stop()


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, event: FmEvent) -> None:
        with self._changed:
            self.kinds.append(event.kind)
            self._changed.notify_all()

    def wait_for(self, kind: str, count: int = 1) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.kinds.count(kind) >= count, 10.0), self.kinds


def _tuner_receiver(port: str, events: Events) -> TunerReceiver:
    detector = CarrierDetector(
        open_snr_db=20, close_snr_db=15, min_level=25, open_hold_s=0.1, close_hold_s=0.1
    )
    tuner = SerialTuner(port, timeout_s=0.1, retries=1)
    return TunerReceiver(
        tuner, 99.1e6, detector, events, poll_s=0.05, backoff_initial_s=0.05, backoff_max_s=0.2
    )


def test_tuner_receiver_reports_a_missing_port_as_a_fault() -> None:
    events = Events()
    receiver = _tuner_receiver("/dev/nonexistent-tuner", events)
    assert receiver.source_health() == SourceHealth("opening")
    receiver.start()
    try:
        events.wait_for("fm.source_error", 2)
        status = receiver.status()
        assert (status["source"], status["source_error"], status["carrier"]) == (
            "missing",
            "FM tuner port /dev/nonexistent-tuner not found - check the USB-serial cable",
            False,
        )
    finally:
        receiver.stop()
    assert receiver.source_health().state == "closed"


def test_tuner_receiver_reports_a_silent_module_until_it_answers(device: FakeTunerDevice) -> None:
    device.ignore_commands = 10**6
    events = Events()
    receiver = _tuner_receiver(device.port, events)
    receiver.start()
    try:
        events.wait_for("fm.source_error", 2)
        health = receiver.source_health()
        assert health.state == "failed" and health.error is not None
        assert health.error.endswith("does not answer - check its power, its wiring and the baud rate (9600)")
        device.ignore_commands = 0  # powered up
        events.wait_for("fm.carrier_present")
        assert receiver.source_health() == OK and receiver.status()["source_error"] is None
    finally:
        receiver.stop()
