"""Telemetry samples: the box's own readings (from a real sysfs/procfs layout in files, and from this
machine's kernel), sections other modules add, and every sample a valid protocol record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.link_state import StateFacts
from agent.store import Store
from agent.telemetry import SystemReadings, Telemetry, on_battery
from protocol.json_wire import ProtocolError
from protocol.messages import Record, decode_record
from protocol.topics import Kind

DEVICE = "test-box-01"
NOW = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
FACTS = StateFacts(None, ("zone-1",), 80, {}, True, "ntp")


def fake_kernel(root: Path, zones: dict[str, str]) -> tuple[Path, Path]:
    thermal, proc = root / "thermal", root / "proc"
    for index, (kind, millidegrees) in enumerate(zones.items()):
        zone = thermal / f"thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(f"{kind}\n", encoding="ascii")
        (zone / "temp").write_text(f"{millidegrees}\n", encoding="ascii")
    proc.mkdir()
    (proc / "meminfo").write_text(
        "MemTotal:        3884000 kB\nMemFree:          100000 kB\nMemAvailable:    2913000 kB\n",
        encoding="ascii",
    )
    (proc / "uptime").write_text("86400.57 172000.10\n", encoding="ascii")
    return thermal, proc


def test_readings_come_from_the_kernels_files(tmp_path: Path) -> None:
    thermal, proc = fake_kernel(tmp_path, {"gpu-thermal": "40000", "cpu-thermal": "51540"})
    readings = SystemReadings(tmp_path, thermal=thermal, proc=proc).read()
    assert readings["cpu_temp_c"] == 51.5, "the CPU's zone, not the first one"
    assert readings["mem_used_pct"] == 25.0 and readings["uptime_s"] == 86400
    assert readings["disk_free_mb"] > 0 and readings["load_1m"] >= 0


def test_an_unreadable_reading_is_left_out(tmp_path: Path) -> None:
    thermal, proc = fake_kernel(tmp_path, {"cpu-thermal": "not a number"})
    (proc / "uptime").unlink()
    readings = SystemReadings(tmp_path / "gone", thermal=thermal, proc=proc).read()
    assert set(readings) == {"load_1m", "mem_used_pct"}


def test_this_machines_kernel_answers() -> None:
    readings = SystemReadings(Path("/tmp")).read()
    assert {"load_1m", "mem_used_pct", "disk_free_mb", "uptime_s"} <= set(readings)
    assert 0 < readings["mem_used_pct"] < 100 and readings["uptime_s"] > 0


def record(data: dict[str, Any]) -> Record:
    return decode_record(Kind.TELEMETRY, Record(Kind.TELEMETRY, DEVICE, 1, NOW, data).to_json(), DEVICE)


def telemetry(tmp_path: Path, interval: float = 60, mono: list[float] | None = None) -> Telemetry:
    clock = mono if mono is not None else [0.0]
    store = Store.open(tmp_path / "state")
    return Telemetry(store, tmp_path, timedelta(seconds=interval), mono=lambda: clock[0])


def test_a_sample_holds_clock_relays_cache_and_every_section(tmp_path: Path) -> None:
    sampler = telemetry(tmp_path)
    # the central sync's cache status (agent.audio_downloads), as its download rounds publish it
    sampler.use_cache(lambda: {"bytes": 3 << 20, "missing": 0, "items": 4})
    sampler.use_power(lambda: on_battery({"mains_present": True}))
    sampler.add_provider("power", lambda: {"mains": False, "battery_v": 12.4})
    sampler.add_provider("modem", lambda: {"rssi_dbm": -71, "operator": "Viettel", "registered": True})
    data = sampler.sample(FACTS)
    assert data["clock_trusted"] is True and data["clock_source"] == "ntp" and data["relays_on"] == ["zone-1"]
    assert data["cache_used_mb"] == 3 and data["cache_missing"] == 0 and data["on_battery"] is False
    assert data["power"] == {"mains": False, "battery_v": 12.4} and data["modem"]["operator"] == "Viettel"
    assert record(data).data == data


def test_cache_and_power_readings_not_known_yet_are_left_out_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = telemetry(tmp_path)
    sampler.use_cache(dict)  # before the first download round the status is empty
    sampler.use_power(lambda: on_battery({"mains_present": None}))  # no mains input configured
    with caplog.at_level(logging.WARNING):
        data = sampler.sample(FACTS)
    assert not {"cache_used_mb", "cache_missing", "on_battery"} & set(data) and caplog.records == []
    sampler.use_power(lambda: on_battery({"mains_present": False}))
    assert sampler.sample(FACTS)["on_battery"] is True


def test_a_failing_or_bad_provider_loses_only_its_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = telemetry(tmp_path)
    state = {"fail": True}

    def flaky() -> dict[str, Any]:
        if state["fail"]:
            raise OSError("modem on /dev/ttyUSB2 does not answer")
        return {"rssi_dbm": -80}

    sampler.add_provider("modem", flaky)
    sampler.add_provider("amplifier", lambda: {"fault": [1, 2]})  # a list is not a reading
    sampler.add_provider("quiet", lambda: None)  # nothing to say this time
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            data = sampler.sample(FACTS)
            assert not {"modem", "amplifier", "quiet"} & set(data) and "load_1m" in data
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, "each failing section is logged once until it recovers"
    assert any("ttyUSB2" in w for w in warnings) and any("amplifier.fault" in w for w in warnings)
    state["fail"] = False
    assert sampler.sample(FACTS)["modem"] == {"rssi_dbm": -80}


def test_a_section_name_must_be_new_and_of_the_protocols_form(tmp_path: Path) -> None:
    sampler = telemetry(tmp_path)
    sampler.add_provider("power", dict)
    for name in ("power", "load_1m", "Power", "", "a-b", "x" * 40):
        with pytest.raises(ValueError, match="telemetry section"):
            sampler.add_provider(name, dict)


def test_a_sample_is_kept_when_due_on_the_monotonic_clock(tmp_path: Path) -> None:
    mono = [100.0]
    sampler = telemetry(tmp_path, interval=60, mono=mono)
    kept = []
    for second in range(0, 181, 10):
        mono[0] = 100.0 + second
        kept.append(sampler.tick(NOW + timedelta(seconds=second), FACTS))
    seqs = [seq for seq in kept if seq is not None]
    assert seqs == [1, 2, 3, 4] and kept[0] == 1 and kept[6] == 2
    rows = sampler.store.undelivered_telemetry(10)
    assert [row["seq"] for row in rows] == seqs and rows[0]["data"]["relays_on"] == ["zone-1"]


readings = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(section=st.dictionaries(st.text(max_size=40), readings, max_size=40))
def test_whatever_a_provider_returns_the_sample_is_a_valid_record(section: dict[str, Any]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        sampler = telemetry(Path(directory))
        sampler.add_provider("health", lambda: section)
        data = sampler.sample(FACTS)
        assert record(data).data == data
        if "health" in data:
            assert data["health"] == section
        else:  # the protocol would refuse it: the box does not send it
            with pytest.raises(ProtocolError):
                record({"health": section})
        sampler.store.close()


def test_no_sample_is_kept_in_memory_while_the_store_cannot_be_written(tmp_path: Path) -> None:
    """Writes the card refuses wait in a bounded buffer with the play log's: samples must not crowd
    those out, so none is taken until the store recovers."""
    mono = [0.0]
    sampler = telemetry(tmp_path, interval=60, mono=mono)
    sampler.store.buffer.fail(OSError(30, "read-only file system"))
    assert sampler.tick(NOW, FACTS) is None and sampler.skipped == 1
    assert sampler.store.buffer.pending == 0
