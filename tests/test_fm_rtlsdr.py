"""RtlSdrSource with fake dongles: tuning below the station, stall → reopen with backoff, events."""

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
from fm_receiver.rtlsdr_source import RtlSdrSource, open_rtlsdr_device
from foundation.errors import HardwareError

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
        assert source.offset_hz == 250_000 and source.state == "open"
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


def test_without_a_usable_dongle_opening_fails_cleanly() -> None:
    try:
        device = open_rtlsdr_device(0)
    except HardwareError as exc:
        assert "RTL-SDR" in str(exc)
    else:  # a real dongle is plugged in here
        device.close()
        pytest.skip("an RTL-SDR dongle is present")
