"""RtlSdrSource with fake dongles: tuning below the station, stall → reopen with backoff, events,
and its health: a missing, busy or silent dongle is a fault in plain words, not "no carrier".
The real pyrtlsdr is used where it can run here: with no dongle attached, opening must say so."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from fm_receiver.dsp import FmDemodulator
from fm_receiver.fake_rtlsdr import FakeDongleFactory
from fm_receiver.iq_source import FmEvent
from fm_receiver.quality import CarrierDetector
from fm_receiver.receiver import FmReceiver
from fm_receiver.rtlsdr_source import RtlSdrSource, open_fault, open_rtlsdr_device
from fm_receiver.source_health import OK, SourceFault, SourceHealth

STATION = 99_100_000.0
RATE = 1_024_000


class EventLog:
    def __init__(self) -> None:
        self.events: list[FmEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: FmEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.kinds()), timeout), self.kinds()


def _source(factory: FakeDongleFactory, log: EventLog, **kwargs: float) -> RtlSdrSource:
    return RtlSdrSource(
        STATION,
        sample_rate=RATE,
        block_samples=16_384,
        device_factory=factory,
        on_event=log,
        watchdog_s=kwargs.get("watchdog_s", 0.5),
        backoff_initial_s=kwargs.get("backoff_initial_s", 0.05),
    )


def _read_some(source: RtlSdrSource, blocks: int) -> None:
    for _ in range(blocks):
        block = source.read(timeout=2.0)
        assert block is not None and block.dtype == np.complex64 and len(block) == 16_384


def test_tunes_below_the_station_and_delivers_blocks() -> None:
    factory = FakeDongleFactory({STATION: -20.0})
    log = EventLog()
    source = _source(factory, log)
    source.open()
    try:
        _read_some(source, 3)
        device = factory.devices[0]
        assert device.tuned == [STATION - 250_000] and device.sample_rate == RATE
        assert source.offset_hz == 250_000 and source.health.state == "ok"
    finally:
        source.close()
    assert device.closed.wait(1.0)
    assert log.events == []


def test_stalled_dongle_is_closed_and_reopened_with_an_event() -> None:
    factory = FakeDongleFactory({STATION: -20.0}, stalls=[3, None])
    log = EventLog()
    source = _source(factory, log)
    source.open()
    try:
        _read_some(source, 3)
        started = time.monotonic()
        log.wait_for(lambda kinds: "fm.source_reopened" in kinds)
        assert time.monotonic() - started >= 0.4  # the watchdog waited for 0.5 s of silence
        assert log.kinds() == ["fm.source_stalled", "fm.source_reopened"]
        assert "no samples" in log.events[0].detail["reason"]
        assert factory.devices[0].closed.wait(1.0)
        _read_some(source, 3)
        assert factory.devices[1].reads >= 3 and source.reopen_count == 1
    finally:
        source.close()


def test_reopen_failures_back_off_exponentially() -> None:
    factory = FakeDongleFactory({STATION: -20.0}, stalls=[2, None], fail_opens=3)
    log = EventLog()
    source = _source(factory, log, backoff_initial_s=0.05)
    source.open()
    try:
        log.wait_for(lambda kinds: "fm.source_reopened" in kinds)
        failures = [e for e in log.events if e.kind == "fm.source_open_failed"]
        assert [e.detail["retry_s"] for e in failures] == pytest.approx([0.05, 0.1, 0.2])
        assert log.events[-1].detail["attempts"] == 4
        _read_some(source, 2)
    finally:
        source.close()


def test_receiver_on_a_fake_dongle_relays_the_station_through_a_stall() -> None:
    factory = FakeDongleFactory({STATION: -15.0}, stalls=[40, None])
    log = EventLog()
    source = _source(factory, log)
    receiver = FmReceiver(
        source,
        FmDemodulator(RATE, source.offset_hz),
        CarrierDetector(open_hold_s=0.2),
        log,
        frequency_hz=STATION,
        starve_s=0.2,  # below the 0.5 s watchdog, as the default 1 s is below the default 2 s
    )
    receiver.start()
    try:
        log.wait_for(lambda kinds: "fm.carrier_present" in kinds)
        stream = receiver.open_stream()
        assert len(stream.read(9600)) > 0
        log.wait_for(lambda kinds: kinds.count("fm.carrier_present") == 2)
        expected = ["fm.carrier_present", "fm.carrier_lost", "fm.source_stalled", "fm.source_reopened"]
        assert log.kinds()[:4] == expected
        assert log.events[1].detail["reason"] == "no samples"
        while stream.read(10**6):  # what was buffered before the stall, then the end
            pass
        assert stream.closed
        assert receiver.status()["carrier"] is True and receiver.status()["snr_db"] > 20
    finally:
        receiver.stop()


MISSING = SourceHealth("missing", "no RTL-SDR dongle found (device 0) - check the USB cable")


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _receiver(source: RtlSdrSource, log: EventLog) -> FmReceiver:
    return FmReceiver(
        source,
        FmDemodulator(RATE, source.offset_hz),
        CarrierDetector(open_hold_s=0.2),
        log,
        frequency_hz=STATION,
        starve_s=0.2,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )


def test_a_stall_that_a_reopen_cures_is_never_a_fault() -> None:
    factory = FakeDongleFactory({STATION: -20.0}, stalls=[3, None])
    seen: list[tuple[str, SourceHealth]] = []
    source = RtlSdrSource(
        STATION, sample_rate=RATE, block_samples=16_384, device_factory=factory, watchdog_s=0.5,
        on_event=lambda event: seen.append((event.kind, source.health)),
    )  # fmt: skip
    assert source.health == SourceHealth("opening")
    source.open()
    try:
        _read_some(source, 4)  # three from the first dongle, then the reopened one
        assert source.health == OK
        assert [(kind, health.state) for kind, health in seen] == [
            ("fm.source_stalled", "opening"),
            ("fm.source_reopened", "opening"),
        ]
    finally:
        source.close()
    assert source.health.state == "closed"


def test_a_missing_dongle_is_a_fault_until_it_is_plugged_in() -> None:
    factory = FakeDongleFactory({STATION: -15.0}, present=False)
    log = EventLog()
    source = _source(factory, log)
    receiver = _receiver(source, log)
    receiver.start()
    try:
        log.wait_for(lambda kinds: kinds.count("fm.source_error") >= 2)  # it keeps trying
        assert receiver.source_health() == MISSING
        status = receiver.status()
        assert (status["source"], status["source_error"], status["carrier"]) == (
            "missing",
            "no RTL-SDR dongle found (device 0) - check the USB cable",
            False,
        )
        factory.plug_in()
        log.wait_for(lambda kinds: "fm.carrier_present" in kinds)
        assert receiver.source_health() == OK and receiver.status()["source_error"] is None
    finally:
        receiver.stop()


def test_a_dongle_pulled_out_while_running_is_missing_until_it_is_back() -> None:
    factory = FakeDongleFactory({STATION: -15.0})
    log = EventLog()
    source = _source(factory, log)
    receiver = _receiver(source, log)
    receiver.start()
    try:
        log.wait_for(lambda kinds: "fm.carrier_present" in kinds)
        factory.unplug()
        log.wait_for(lambda kinds: "fm.source_open_failed" in kinds)  # the watchdog's reopen found none
        assert receiver.source_health() == MISSING
        log.wait_for(lambda kinds: "fm.carrier_lost" in kinds)  # no samples for starve_s
        factory.plug_in()
        log.wait_for(lambda kinds: "fm.source_reopened" in kinds)
        _wait_until(lambda: receiver.source_health() == OK)
        log.wait_for(lambda kinds: kinds.count("fm.carrier_present") == 2)
    finally:
        receiver.stop()


def test_a_dongle_that_opens_but_sends_nothing_is_stalled() -> None:
    factory = FakeDongleFactory({STATION: -15.0}, stalls=[0, 0, 0, 0, 5])
    log = EventLog()
    source = _source(factory, log, watchdog_s=0.3)
    source.open()
    try:
        log.wait_for(lambda kinds: "fm.source_stalled" in kinds)
        stalled = SourceHealth(
            "stalled", "RTL-SDR dongle (device 0) opens but sends no samples - unplug it and plug it back in"
        )
        assert source.health == stalled
        log.wait_for(lambda kinds: kinds.count("fm.source_reopened") >= 2)
        assert source.health == stalled  # reopening alone does not cure it: samples must come
        _wait_until(lambda: len(factory.devices) == 5)
        _wait_until(lambda: source.health == OK)  # the fifth dongle delivers
    finally:
        source.close()


def test_an_open_that_never_returns_is_stalled() -> None:
    factory = FakeDongleFactory({STATION: -15.0}, stalls=[2, None])
    log = EventLog()
    source = RtlSdrSource(
        STATION, sample_rate=RATE, block_samples=16_384, device_factory=factory, on_event=log,
        watchdog_s=0.3, open_timeout_s=0.3,
    )  # fmt: skip
    source.open()
    try:
        factory.hang_opens()
        log.wait_for(lambda kinds: "fm.source_stalled" in kinds)
        _wait_until(lambda: source.health.state == "stalled")
        assert source.health.error == (
            "RTL-SDR dongle (device 0) does not answer: opening it has not finished in 0.3 s"
            " - unplug it and plug it back in"
        )
        factory.release_opens()
        log.wait_for(lambda kinds: "fm.source_reopened" in kinds)
        _read_some(source, 2)
        assert source.health == OK
    finally:
        factory.release_opens()
        source.close()


# -- the real pyrtlsdr, where it can run ---------------------------------------------------------


def real_library_without_a_dongle() -> None:
    """Skip unless pyrtlsdr loads librtlsdr here and no dongle is plugged in."""
    try:
        device = open_rtlsdr_device(0)
    except SourceFault as exc:
        if "cannot load librtlsdr" in str(exc):
            pytest.skip(str(exc))
        return
    device.close()
    pytest.skip("an RTL-SDR dongle is present")


def test_without_a_dongle_the_real_library_reports_it_missing() -> None:
    real_library_without_a_dongle()
    with pytest.raises(SourceFault) as caught:
        open_rtlsdr_device(0)
    assert caught.value.state == "missing"
    assert str(caught.value) == "no RTL-SDR dongle found (device 0) - check the USB cable"
    with pytest.raises(SourceFault, match=r"no RTL-SDR dongle found \(device 3\) - check"):
        open_rtlsdr_device(3)


def test_a_receiver_on_the_real_library_without_a_dongle_shows_the_fault() -> None:
    real_library_without_a_dongle()
    log = EventLog()
    source = RtlSdrSource(STATION, sample_rate=RATE, on_event=log)  # opens through pyrtlsdr
    receiver = _receiver(source, log)
    receiver.start()
    try:
        log.wait_for(lambda kinds: "fm.source_error" in kinds)
        assert receiver.source_health() == MISSING
        assert receiver.status()["carrier"] is False
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("code", "state", "words"),
    [
        (-4, "missing", "no RTL-SDR dongle found (device 1) - check the USB cable"),
        (-6, "failed", "RTL-SDR dongle (device 1) is busy - another program (rtl_fm, rtl_tcp) or the"),
        (-3, "failed", "RTL-SDR dongle (device 1): permission denied - install the rtl-sdr udev rules"),
        (-1, "failed", "RTL-SDR dongle (device 1) cannot be opened: <LIBUSB_ERROR_IO (-1)"),
    ],
)
def test_what_pyrtlsdr_open_errors_mean(code: int, state: str, words: str) -> None:
    try:
        from rtlsdr.rtlsdr import LibUSBError
    except Exception as exc:  # pyrtlsdr loads librtlsdr as it is imported
        pytest.skip(f"pyrtlsdr cannot load librtlsdr: {exc}")
    fault = open_fault(LibUSBError(code, "Could not open SDR (device index = 1)"), 1)
    assert fault.state == state and str(fault).startswith(words)
