"""The health monitor: gpiozero MockFactory inputs, a board tree on disk, a real SQLite store, and
the modem on a pseudo-terminal; alarms raise and clear with hysteresis and are recorded as events."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

import agent.health as health_module
from agent.alarms import RULES, Rule
from agent.config import Config, load_config_text
from agent.health import HealthFacts, HealthMonitor
from agent.store import Store
from drivers.fake_modem import FakeModemDevice
from drivers.modem import Modem

TRUSTED = HealthFacts(clock_trusted=True, clock_reason="kernel reports the clock NTP-synchronized")
NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def make_config(tmp_path: Path, extra: str = "", audio: str = "{backend: null}") -> Config:
    text = f"""
device: {{id: test-box-01}}
storage: {{dir: state}}
audio: {audio}
gpio:
  pin_factory: mock
  amplifiers:
    - {{name: zone-1, pin: 17, fault_pin: 23}}
    - {{name: zone-2, pin: 18, fault_pin: 24}}
health:
  mains: {{pin: 25}}
{extra}
"""
    (tmp_path / "state").mkdir(exist_ok=True)
    return load_config_text(text, tmp_path / "agent.yaml")


class Box:
    """A monitor on a fake monotonic clock; ``run`` polls it every half second of that clock."""

    def __init__(self, monitor: HealthMonitor, clock: list[float], store: Store) -> None:
        self.monitor, self.clock, self.store = monitor, clock, store

    def run(self, seconds: float, facts: HealthFacts = TRUSTED) -> None:
        end = self.clock[0] + seconds
        while self.clock[0] < end:
            self.clock[0] += 0.5
            self.monitor.poll(facts, NOW)

    @property
    def raised(self) -> set[str]:
        return set(self.monitor.active_codes)

    def events(self) -> list[tuple[str, str]]:
        rows = self.store.undelivered_events(1000)
        return [
            (row["kind"], row["detail"].split(":")[0]) for row in rows if row["kind"].startswith("alarm.")
        ]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory()
    yield mock
    mock.reset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state")
    yield opened
    opened.close()


@pytest.fixture
def box(tmp_path: Path, factory: MockFactory, store: Store) -> Iterator[Box]:
    clock = [1000.0]
    monitor = HealthMonitor(
        make_config(tmp_path), store, factory=factory, root=tmp_path / "root", clock=lambda: clock[0]
    )
    factory.pin(25).drive_high()  # mains present
    yield Box(monitor, clock, store)
    monitor.close()


# -- mains and amplifier faults through MockFactory pins ----------------------------------------


def test_mains_lost_raises_after_5s_and_clears_after_30s(box: Box, factory: MockFactory) -> None:
    box.run(10)
    assert box.raised == set() and box.monitor.snapshot()["mains"] == {"configured": True, "present": True}
    factory.pin(25).drive_low()
    box.run(4.5)
    assert "mains.lost" not in box.raised
    box.run(1)
    assert "mains.lost" in box.raised
    factory.pin(25).drive_high()
    box.run(29.5)
    assert "mains.lost" in box.raised  # mains must be back for 30 s
    box.run(1)
    assert box.raised == set()
    assert box.events() == [("alarm.raised", "mains.lost"), ("alarm.cleared", "mains.lost")]


def test_a_chattering_mains_input_never_flaps_the_alarm(box: Box, factory: MockFactory) -> None:
    for _ in range(20):  # lost for 4 s, back for 1 s: never lost for the 5 s the alarm needs
        factory.pin(25).drive_low()
        box.run(4)
        factory.pin(25).drive_high()
        box.run(1)
    assert box.events() == []
    factory.pin(25).drive_low()
    box.run(6)
    for _ in range(20):  # now raised: back for 20 s at most at a time, never the 30 s to clear
        factory.pin(25).drive_high()
        box.run(20)
        factory.pin(25).drive_low()
        box.run(1)
    assert box.events() == [("alarm.raised", "mains.lost")]


def test_a_broken_mains_wire_reads_as_lost(tmp_path: Path, store: Store) -> None:
    clock = [0.0]
    factory = MockFactory()  # nothing drives pin 25: the pull-down holds it low
    monitor = HealthMonitor(make_config(tmp_path), store, factory=factory, clock=lambda: clock[0])
    try:
        Box(monitor, clock, store).run(6)
        assert "mains.lost" in monitor.active_codes
    finally:
        monitor.close()
        factory.reset()


def test_each_amplifier_fault_input_is_its_own_alarm(box: Box, factory: MockFactory) -> None:
    box.run(3)
    assert box.monitor.snapshot()["amplifier_faults"] == {"zone-1": False, "zone-2": False}  # pulled up
    factory.pin(24).drive_low()  # zone-2's amplifier pulls its fault line low
    box.run(1.5)
    assert box.raised == set()
    box.run(1)
    assert box.raised == {"amp.fault.zone-2"}
    assert box.monitor.snapshot()["amplifier_faults"] == {"zone-1": False, "zone-2": True}
    [alarm] = box.monitor.snapshot()["alarms"]
    assert (
        alarm["code"] == "amp.fault.zone-2" and alarm["detail"] == "amplifier zone-2: fault input on pin 24"
    )
    factory.pin(24).drive_high()
    box.run(11)
    assert box.events() == [("alarm.raised", "amp.fault.zone-2"), ("alarm.cleared", "amp.fault.zone-2")]


def test_an_input_that_cannot_be_opened_is_reported_and_the_others_watched(
    tmp_path: Path, factory: MockFactory, store: Store
) -> None:
    factory.pin(23).function = "output"  # taken by something else
    from gpiozero import DigitalOutputDevice  # only to hold the pin, as another program would

    holder = DigitalOutputDevice(24, pin_factory=factory)
    try:
        monitor = HealthMonitor(make_config(tmp_path), store, factory=factory)
        assert list(monitor.amp_faults) == ["zone-1"] and monitor.mains is not None
        assert monitor.unavailable == [monitor.snapshot()["unavailable"][0]]
        assert "amplifier zone-2 fault input on pin 24 cannot be opened" in monitor.unavailable[0]
        monitor.close()
    finally:
        holder.close()


# -- the board: temperature, throttling, storage, sound cards ------------------------------------


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


def test_cpu_hot_has_a_band_between_raise_and_clear(box: Box, tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone0/temp", "82300\n")
    box.run(31)
    assert box.raised == {"cpu.hot"} and box.monitor.snapshot()["cpu"]["temp_c"] == 82.3
    write(root, "sys/class/thermal/thermal_zone0/temp", "77000\n")
    box.run(120)
    assert box.raised == {"cpu.hot"}  # between 75 and 80 °C it stays
    write(root, "sys/class/thermal/thermal_zone0/temp", "74000\n")
    box.run(66)
    assert box.raised == set()


def test_throttling_from_the_pi_firmware_and_its_absence(box: Box, tmp_path: Path) -> None:
    box.run(15)  # no firmware file, no thermal zone: unknown, no alarm, no crash
    assert box.monitor.snapshot()["cpu"] == {"temp_c": None, "throttled": None, "throttled_flags": []}
    write(tmp_path / "root", "sys/devices/platform/soc/soc:firmware/get_throttled", "0x50005\n")
    box.run(16)
    assert box.raised == {"cpu.throttled"}
    assert box.monitor.snapshot()["cpu"]["throttled_flags"] == [
        "under-voltage now",
        "throttled now",
        "under-voltage since boot",
        "throttled since boot",
    ]
    write(tmp_path / "root", "sys/devices/platform/soc/soc:firmware/get_throttled", "0x50000\n")
    box.run(66)
    assert box.raised == set()  # only what happened since boot: no alarm now


def test_storage_low_from_free_space_or_the_store(
    box: Box, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    box.run(15)
    free = box.monitor.snapshot()["storage"]["free_bytes"]
    assert free > 0 and box.monitor.snapshot()["storage"]["read_only"] is False
    monkeypatch.setattr(health_module, "STORAGE_LOW", free * 2)  # the real free space is now too low
    box.run(16)
    assert box.raised == {"storage.low"}
    monkeypatch.setattr(health_module, "STORAGE_LOW", 0)
    monkeypatch.setattr(health_module, "STORAGE_OK", free * 2)  # above the low mark, below the clear one
    box.run(120)
    assert box.raised == {"storage.low"}
    monkeypatch.setattr(health_module, "STORAGE_OK", 0)
    box.run(61)
    assert box.raised == set()
    full = HealthFacts(clock_trusted=True, store_fault="the storage is full: database or disk is full")
    box.run(11, full)
    assert box.raised == {"storage.low"}


def test_a_store_on_a_read_only_card_raises_at_once(box: Box) -> None:
    box.run(1, HealthFacts(clock_trusted=True, store_fault="the storage is read-only: attempt to write"))
    assert box.raised == {"storage.readonly"}


def test_no_sound_card_when_libvlc_plays_through_alsa(tmp_path: Path, store: Store) -> None:
    clock = [0.0]
    config = make_config(tmp_path, audio="{backend: vlc, vlc_args: [--aout=alsa]}")
    root = tmp_path / "root"
    write(root, "proc/asound/cards", "--- no soundcards ---\n")
    monitor = HealthMonitor(config, store, root=root, clock=lambda: clock[0])
    Box(monitor, clock, store).run(11)
    assert monitor.active_codes == {"audio.no_device"}
    write(root, "proc/asound/cards", " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n")
    Box(monitor, clock, store).run(16)
    assert monitor.active_codes == set()


def test_the_loops_facts_become_alarms(box: Box) -> None:
    box.run(1, HealthFacts(clock_trusted=True, player_fault="libVLC has not finished stop within 2 s"))
    assert box.raised == {"player.hung"}  # at once: the LED must say it while it lasts
    box.run(6)
    box.run(121, HealthFacts(clock_trusted=False, clock_reason="waiting for NTP"))
    box.run(61, HealthFacts(clock_trusted=False, fm_no_carrier=True, cache_behind=True))
    assert box.raised == {"clock.untrusted", "fm.no_carrier", "cache.behind"}
    box.run(11)
    assert box.raised == set()


def test_the_snapshot_is_plain_json(box: Box) -> None:
    box.run(6)
    snapshot = box.monitor.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["modem"] == {"configured": False, "rssi_dbm": None}


READING_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def test_the_telemetry_section_is_flat_short_and_plain(box: Box, factory: MockFactory) -> None:
    """What docs/PROTOCOL.md allows a telemetry section: at most 32 readings named [a-z0-9_], each
    null, true/false, a finite number or a string of at most 256 characters."""
    factory.pin(24).drive_low()
    factory.pin(25).drive_low()
    box.run(6)
    readings = box.monitor.readings()
    assert len(readings) <= 32 and all(READING_NAME.fullmatch(name) for name in readings)
    for value in readings.values():
        assert (
            value is None
            or isinstance(value, bool | int | float)
            or (isinstance(value, str) and len(value) <= 256)
        )
    assert readings["alarms"] == "amp.fault.zone-2,mains.lost" and readings["alarm_count"] == 2
    assert (readings["mains_present"], readings["amp_faults"]) == (False, "zone-2")
    assert readings["modem_rssi_dbm"] is None and readings["storage_free_bytes"] > 0


# -- the modem, for real over a pseudo-terminal --------------------------------------------------


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.02)


def test_a_modem_that_dies_is_an_alarm_and_its_signal_is_in_the_snapshot(
    tmp_path: Path, store: Store
) -> None:
    port = tmp_path / "ttyUSB2"
    device = FakeModemDevice(csq=25).start()
    os.symlink(device.port, port)
    rules = {**RULES, "modem.dead": Rule(0.0, 0.0, "the 4G modem does not answer")}
    modem = Modem(str(port), timeout_s=0.2, retries=0)
    config = make_config(tmp_path, f"  modem: {{port: {port}}}")
    monitor = HealthMonitor(config, store, modem=modem, modem_every=0.05, rules=rules)
    monitor.start()
    try:
        assert monitor.probe is not None
        wait_until(lambda: monitor.probe is not None and monitor.probe.latest().reading is not None)
        monitor.poll(TRUSTED, NOW)
        shown = monitor.snapshot()["modem"]
        assert (shown["rssi_dbm"], shown["registration"], shown["operator"]) == (-63, "home", "Viettel")
        device.unplug()
        port.unlink()
        wait_until(lambda: monitor.probe is not None and monitor.probe.latest().error is not None)
        monitor.poll(TRUSTED, NOW)
        assert "modem.dead" in monitor.active_codes
        assert monitor.snapshot()["modem"]["rssi_dbm"] is None  # a dead modem's last signal is not news
        [event] = store.undelivered_events(10)
        assert event["kind"] == "alarm.raised" and event["detail"].startswith("modem.dead: ")
    finally:
        monitor.close()
        device.stop()
