"""The agent relaying FM from an IQ recording: policy, pre-emption by the schedule, squelch, and
source faults (no dongle, no file, no tuner) shown as faults in ``loa status``, not as "no carrier"."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.control import request
from agent.status import render
from agent.store import Store
from drivers.wav_samples import dominant_frequency, read_wav
from fm_receiver.fake_tuner import FakeTunerDevice
from tests.agent_harness import RunningAgent, at, running_agent, write_config, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_audio_written, wait_for_finished_wav
from tests.fm_synth import Station, make_iq, to_bytes, tone
from tests.test_fm_rtlsdr import real_library_without_a_dongle

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")  # the device's zone in write_config: relay hours are read in it
RATE = 240_000
OFFSET = 10_000


def write_iq(directory: Path, *, station: bool, seconds: float = 3.0) -> Path:
    n = int(RATE * seconds)
    stations = [Station(OFFSET, tone(1000.0, RATE, seconds), level_dbfs=-10.0)] if station else []
    path = directory / ("station.cu8" if station else "noise.cu8")
    path.write_bytes(to_bytes(make_iq(stations, RATE, n, noise_dbfs=-40.0), "cu8"))
    return path


def hours_from_now(start: int, end: int) -> str:
    """A relay window from ``start`` to ``end`` whole hours after the current hour in Vietnam.

    Computed when the test runs, so it holds (or misses) now at any time of day; it may cross
    midnight (``22:00-03:00``).
    """
    hour = datetime.now(VIETNAM).hour
    return f"{(hour + start) % 24:02d}:00-{(hour + end) % 24:02d}:00"


def fm_section(iq: Path, hours: str | None = None) -> str:
    hours = hours or hours_from_now(-2, 3)
    return f"""fm:
  backend: iq_file
  frequency: 99.1MHz
  relay_hours: ["{hours}"]
  zones: [zone-2]
  squelch: {{open_snr_db: 12, close_snr_db: 8, min_level_dbfs: -40, hold: 300ms}}
  iq_file: {{path: {iq.name}, format: cu8, sample_rate: {RATE}, offset: {OFFSET}Hz, loop: true}}
"""


def wait_for_seconds_written(path: Path, seconds: float) -> None:
    """Wait until libVLC's afile output holds ``seconds`` of audio, by the rate in its header."""
    wait_for_audio_written(path, 0)  # the header, written when the output opens
    with path.open("rb") as wav:
        byte_rate = struct.unpack("<I", wav.read(44)[28:32])[0]
    wait_for_audio_written(path, round(seconds * byte_rate))


def relaying(box: RunningAgent) -> bool:
    return box.agent.fm is not None and box.agent.fm.active_token is not None


def test_fm_relays_when_idle_and_yields_to_the_schedule(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=True)
    tone_file(tmp_path, 440, 1.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-1s.wav, at: '{at(4.0)}', zones: [zone-1]}}")
    config = write_config(tmp_path, extra=fm_section(iq))
    with running_agent(config) as box:
        box.wait_for(
            lambda: (request(box.config.control.socket, "status").get("fm") or {}).get("relaying"), timeout=4
        )
        status = request(box.config.control.socket, "status")
        assert status["fm"]["carrier"] is True
        assert box.agent.relays.states()["zone-2"]
        assert box.agent.led is not None and box.agent.led.code.name == "FM_RELAY"
        first_token = box.agent.fm.active_token if box.agent.fm else None
        # the bulletin replaces the stream (the loop notes it right after the start)
        box.wait_for(lambda: box.outcome("news") == "playing" and not relaying(box), timeout=6)
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=4)
        box.wait_for(lambda: relaying(box), timeout=5)  # and FM came back after it
        assert box.agent.fm is not None and box.agent.fm.active_token != first_token
    store = Store.open_readonly(box.config.storage.dir)
    kinds = [e["kind"] for e in store.recent_events(50)]
    store.close()
    assert "fm.relay_on" in kinds and "fm.relay_off" in kinds


def test_noise_is_never_relayed(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=False)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, extra=fm_section(iq))) as box:
        fm = box.agent.fm
        assert fm is not None
        # the squelch has judged the whole 3 s recording (ten times its open hold), and the loop
        # has decided on that
        box.wait_for(lambda: fm.receiver.detector.elapsed_s >= 3.0, timeout=10)
        box.wait_passes(2, timeout=5)
        status = request(box.config.control.socket, "status")
        assert status["fm"]["carrier"] is False
        assert not relaying(box)
        assert not any(box.agent.relays.states().values())


def test_outside_relay_hours_nothing_is_relayed(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=True)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, extra=fm_section(iq, hours_from_now(2, 3)))) as box:
        box.wait_for(lambda: bool(box.agent.fm and box.agent.fm.carrier_present), timeout=4)
        box.wait_passes(2, timeout=5)  # a whole pass decided with the carrier present
        assert not relaying(box)
        assert box.agent.fm is not None and box.agent.fm.last_decision.reason == "outside_hours"


@pytest.mark.vlc
def test_fm_audio_reaches_libvlc(tmp_path: Path) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    iq = write_iq(tmp_path, station=True)
    out = tmp_path / "out.wav"
    args = ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, backend="vlc", vlc_args=args, extra=fm_section(iq))) as box:
        box.wait_for(lambda: relaying(box), timeout=4)
        wait_for_seconds_written(out, 2.0)
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    assert len(mono) / rate > 1.5
    assert abs(dominant_frequency(np.asarray(mono[rate // 2 :]), rate) - 1000.0) < 10.0


def test_serial_tuner_is_switched_in_by_the_audio_relay(tmp_path: Path) -> None:
    device = FakeTunerDevice(rssi=48, snr=31).start()
    write_schedule(tmp_path)
    section = f"""fm:
  backend: serial
  frequency: 99.1MHz
  relay_hours: ["{hours_from_now(-2, 3)}"]
  zones: [zone-2]
  squelch: {{open_snr_db: 12, close_snr_db: 8, hold: 300ms}}
  serial: {{port: {device.port}, baudrate: 9600, audio_relay_pin: 22}}
"""
    try:
        with running_agent(write_config(tmp_path, extra=section)) as box:
            source = box.agent.fm.source_relay if box.agent.fm else None
            assert source is not None
            box.wait_for(lambda: relaying(box) and source.states()["fm-audio"], timeout=6)
            box.wait_for(lambda: box.agent.relays.states() == {"zone-1": False, "zone-2": True}, timeout=2)
            assert any(command.startswith("AT+FREQ=9910") for command in device.received)
            device.rssi, device.snr = 3, 0  # the station fades
            box.wait_for(lambda: not relaying(box) and not source.states()["fm-audio"], timeout=6)
            box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=3)
    finally:
        device.stop()


def test_a_missing_file_does_not_interrupt_the_relay(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=True)
    write_schedule(tmp_path, f"{{id: gone, audio: nowhere.wav, at: '{at(3.0)}'}}")
    with running_agent(write_config(tmp_path, extra=fm_section(iq))) as box:
        box.wait_for(lambda: relaying(box), timeout=4)
        token = box.agent.fm.active_token if box.agent.fm else None
        box.wait_for(lambda: box.outcome("gone") == "failed", timeout=5)
        box.wait_passes(2, timeout=5)
        assert box.agent.fm is not None and box.agent.fm.active_token == token


# -- source faults --------------------------------------------------------------------------------


def stored_events(box: RunningAgent, kind: str) -> list[dict[str, Any]]:
    store = Store.open_readonly(box.config.storage.dir)
    try:
        return [event for event in store.recent_events(500) if event["kind"] == kind]
    finally:
        store.close()


def loa_status_fm_line(box: RunningAgent) -> str:
    """The FM line of ``loa status`` as a technician runs it."""
    loa = Path(sys.executable).parent / "loa"
    result = subprocess.run(
        [str(loa), "--config", str(box.config.source), "status", "--lang", "en"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("fm "))


def faults_recorded_once(box: RunningAgent, words: str) -> None:
    """Several passes of the loop saw the fault (the receiver retried twice), one error was stored."""
    box.wait_for(lambda: len(stored_events(box, "fm.source_error")) >= 2, timeout=10)
    faults = stored_events(box, "fm.source_fault")
    assert [(event["severity"], event["detail"]) for event in faults] == [("error", words)]


def test_a_missing_dongle_is_a_fault_in_loa_status(tmp_path: Path) -> None:
    real_library_without_a_dongle()  # the real pyrtlsdr, with no dongle attached here
    write_schedule(tmp_path)
    section = "fm:\n  backend: rtlsdr\n  frequency: 99.1MHz\n  relay_hours: ['00:00-24:00']\n"
    words = "no RTL-SDR dongle found (device 0) - check the USB cable"
    with running_agent(write_config(tmp_path, extra=section)) as box:
        box.wait_for(
            lambda: (request(box.config.control.socket, "status")["fm"] or {})["source"] == "missing", 5
        )
        faults_recorded_once(box, words)
        fm = request(box.config.control.socket, "status")["fm"]
        assert (fm["source_error"], fm["carrier"], fm["relaying"]) == (words, False, False)
        assert loa_status_fm_line(box) == f"fm       99.1 MHz FAULT: {words}"
        errors = request(box.config.control.socket, "status")["errors"]
        assert errors[0]["kind"] == "fm.source_fault" and errors[0]["detail"] == words


def test_a_missing_tuner_port_is_a_fault_in_loa_status(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    section = """fm:
  backend: serial
  frequency: 99.1MHz
  serial: {port: /dev/loa-no-such-tuner, audio_relay_pin: 22}
"""
    words = "FM tuner port /dev/loa-no-such-tuner not found - check the USB-serial cable"
    with running_agent(write_config(tmp_path, extra=section)) as box:
        faults_recorded_once(box, words)
        assert loa_status_fm_line(box) == f"fm       99.1 MHz FAULT: {words}"


def test_a_missing_iq_file_is_a_fault_until_it_appears(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    wanted = tmp_path / "station.cu8"
    words = f"IQ file {wanted} not found"
    with running_agent(write_config(tmp_path, extra=fm_section(wanted))) as box:
        faults_recorded_once(box, words)
        assert loa_status_fm_line(box) == f"fm       99.1 MHz FAULT: {words}"
        (tmp_path / "made").mkdir()
        os.replace(write_iq(tmp_path / "made", station=True), wanted)  # appears whole, as a finished copy
        box.wait_for(lambda: relaying(box), timeout=10)
        assert [event["detail"] for event in stored_events(box, "fm.source_ok")] == [f"was: {words}"]
        assert len(stored_events(box, "fm.source_fault")) == 1
        line = loa_status_fm_line(box)
        assert line.startswith("fm       99.1 MHz RELAYING: carrier present, level ")


@pytest.mark.parametrize(
    ("fm", "line"),
    [
        (
            {"source": "ok", "source_error": None, "carrier": False, "relaying": False,
             "decision": "no_carrier", "rssi_dbfs": -61.5, "snr_db": -9.8},
            "not relaying (no_carrier): no carrier, level -61.5 dBFS, SNR -9.8 dB",
        ),
        (
            {"source": "ok", "source_error": None, "carrier": True, "relaying": True,
             "decision": "relay_hours", "rssi_dbuv": 48, "snr_db": 31},
            "RELAYING: carrier present, level 48 dBµV, SNR 31 dB",
        ),
        (
            {"source": "stalled", "carrier": False, "relaying": False, "decision": "no_carrier",
             "source_error": "RTL-SDR dongle (device 0) opens but sends no samples"},
            "FAULT: RTL-SDR dongle (device 0) opens but sends no samples",
        ),
        (
            {"source": "opening", "source_error": None, "carrier": False, "relaying": False,
             "decision": "no_carrier", "rssi_dbfs": None, "snr_db": None},
            "not relaying (no_carrier): source opening",
        ),
    ],
)  # fmt: skip
def test_loa_status_says_no_carrier_only_when_the_source_works(fm: dict[str, Any], line: str) -> None:
    status = {"running": True, "device": "xa-1", "fm": {"frequency_mhz": 99.1, **fm}}
    lines = render(status, ZoneInfo("Asia/Ho_Chi_Minh")).splitlines()
    assert [text for text in lines if text.startswith("fm ")] == [f"fm       99.1 MHz {line}"]
