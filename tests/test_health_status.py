"""Health in the running agent: the real daemon with a modem on a pseudo-terminal and the mains input
on gpiozero's MockFactory; ``loa status --json`` and the text a crew reads; alarms as events."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent import cli
from agent.status import health_lines
from drivers.fake_modem import FakeModemDevice
from drivers.gpio import LedCode
from tests.agent_harness import running_agent, write_config, write_schedule
from tests.test_agent_fm import fm_section, hours_from_now, write_iq

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def loa_status_json(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert cli.main(["--config", str(config), "status", "--json"]) == 0
    status: dict[str, object] = json.loads(capsys.readouterr().out)
    return status


def test_loa_status_shows_the_modem_the_mains_and_a_raised_alarm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modem = FakeModemDevice(csq=18, operator="Vinaphone").start()
    write_schedule(tmp_path)
    extra = f"health:\n  modem: {{port: {modem.port}}}\n  mains: {{pin: 25}}\n"
    config = write_config(tmp_path, extra=extra)
    try:
        with running_agent(config) as box:
            agent = box.agent
            assert agent.health.mains is not None and agent.health.probe is not None
            mains_pin = agent.health.mains._device.pin  # the MockPin the daemon's MockFactory made
            mains_pin.drive_high()
            box.wait_for(lambda: agent.health.probe is not None and agent.health.probe.latest().polls > 0, 5)
            box.wait_passes(2, timeout=5)
            status = loa_status_json(config, capsys)
            mains_pin.drive_low()  # mains lost: the alarm raises after 5 s
            box.wait_for(lambda: "mains.lost" in agent.health.active_codes, timeout=8)
            box.wait_for(lambda: agent.led is not None and agent.led.code is LedCode.MAINS_LOST, timeout=3)
            box.wait_passes(2, timeout=5)
            capsys.readouterr()
            assert cli.main(["--config", str(config), "status", "--lang", "en"]) == 0
            shown = capsys.readouterr().out
            events = [(e["kind"], e["detail"][:11]) for e in agent.store.undelivered_events(1000)]
    finally:
        modem.stop()
    health = status["health"]
    assert isinstance(health, dict)
    assert health["modem"]["rssi_dbm"] == -77 and health["modem"]["operator"] == "Vinaphone"
    assert health["mains"] == {"configured": True, "present": True} and health["alarms"] == []
    assert "modem    signal -77 dBm, registered (home), Vinaphone LTE" in shown
    assert "power    ON BACKUP SUPPLY: no mains" in shown
    assert "ALARM    mains.lost since " in shown and "running on the 12-24 V backup" in shown
    assert ("alarm.raised", "mains.lost:") in events


def test_health_lines_for_each_state() -> None:
    base = {
        "mains": {"configured": False, "present": None},
        "modem": {"configured": False, "rssi_dbm": None},
        "cpu": {"temp_c": 48.25, "throttled": "0x0", "throttled_flags": []},
        "storage": {"free_bytes": 12_300_000_000, "total_bytes": 29_100_000_000, "read_only": False},
        "alarms": [],
        "unavailable": [],
    }
    assert health_lines(base, TZ) == ["board    CPU 48.2 °C; storage 12.3 GB free of 29.1 GB"]
    dead = {
        **base,
        "mains": {"configured": True, "present": True},
        "modem": {"configured": True, "port": "/dev/ttyUSB2", "answering": False,
                  "error": "modem port /dev/ttyUSB2 not found - is the modem plugged in?"},
        "cpu": {"temp_c": None, "throttled": None, "throttled_flags": ["under-voltage now"]},
        "storage": {"free_bytes": 0, "total_bytes": 1_000_000_000, "read_only": True},
        "alarms": [{"code": "modem.dead", "since": "2026-11-26T01:02:03.000Z",
                    "words": "the 4G modem does not answer (or answers garbage)",
                    "detail": "modem port /dev/ttyUSB2 not found - is the modem plugged in?"}],
        "unavailable": ["amplifier zone-2 fault input on pin 24 cannot be opened: pin in use"],
    }  # fmt: skip
    assert health_lines(dead, TZ) == [
        "power    mains present",
        "modem    NOT ANSWERING: modem port /dev/ttyUSB2 not found - is the modem plugged in?",
        "board    CPU temperature unknown; under-voltage now; storage 0.0 GB free of 1.0 GB, READ-ONLY",
        "ALARM    modem.dead since 2026-11-26 08:02:03: the 4G modem does not answer (or answers garbage)"
        " (modem port /dev/ttyUSB2 not found - is the modem plugged in?)",
        "         not watched: amplifier zone-2 fault input on pin 24 cannot be opened: pin in use",
    ]
    modem = {"configured": True, "answering": True, "rssi_dbm": None, "registration": "searching"}
    searching = {**base, "modem": {**modem, "operator": None, "access": None}}
    assert health_lines(searching, TZ)[0] == "modem    signal unknown, SEARCHING"
    assert health_lines(None, TZ) == []  # the agent is not running: nothing to say


@pytest.mark.parametrize(("hours", "missing"), [((-2, 3), True), ((2, 3), False)])
def test_no_fm_carrier_counts_only_within_the_relay_hours(
    tmp_path: Path, hours: tuple[int, int], missing: bool
) -> None:
    iq = write_iq(tmp_path, station=False)  # noise only: the station is off air
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, extra=fm_section(iq, hours_from_now(*hours)))) as box:
        fm = box.agent.fm
        assert fm is not None
        box.wait_for(lambda: fm.receiver.detector.elapsed_s >= 1.0, timeout=10)
        box.wait_passes(2, timeout=5)
        assert fm.last_decision.reason == "no_carrier"
        assert box.agent.health.facts.fm_no_carrier is missing


def test_an_absent_modem_is_said_and_the_agent_plays_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path, extra=f"health:\n  modem: {{port: {tmp_path / 'ttyUSB2'}}}\n")
    with running_agent(config) as box:
        probe = box.agent.health.probe
        assert probe is not None
        box.wait_for(lambda: probe.latest().polls > 0, timeout=5)
        box.wait_passes(2, timeout=5)
        status = loa_status_json(config, capsys)
        assert probe.alive and box.agent.passes > 0
    modem = status["health"]["modem"]  # type: ignore[index]
    assert (modem["answering"], modem["rssi_dbm"]) == (False, None)
    assert modem["error"] == f"modem port {tmp_path / 'ttyUSB2'} not found - is the modem plugged in?"
    assert status["running"] is True
