"""``fm demod`` and ``fm scan`` end to end: handlers in-process, and once through ``python -m``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from fm_receiver.cli import add_fm_commands, parse_hz
from fm_receiver.dsp import FmParameterError
from tests.fm_synth import Station, dominant_frequency, make_iq, sine_fit, speech_like, to_bytes, tone

RATE = 1_024_000
ROOT = Path(__file__).resolve().parent.parent


def run_loa(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="loa")
    add_fm_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """2.5 s at 1.024 MS/s, cu8: the station 250 kHz above the centre, a neighbour 300 kHz away."""
    n = int(RATE * 2.5)
    stations = [
        Station(-250_000, tone(1_000, RATE, 2.5, 0.5), level_dbfs=-12),
        Station(50_000, speech_like(RATE, 2.5), level_dbfs=-9),
    ]
    path = tmp_path / "pole.cu8"
    path.write_bytes(to_bytes(make_iq(stations, RATE, n, noise_dbfs=-38), "cu8"))
    return path


def test_demod_writes_wav_and_one_json_object(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.wav"
    argv = ["fm", "demod", "--input", str(recording), "--format", "cu8", "--sample-rate", "1.024MHz"]
    code, stdout = run_loa([*argv, "--offset=-250kHz", "--out", str(out), "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["carrier"] is True
    assert summary["rssi_dbfs"] == pytest.approx(-12, abs=1)
    assert summary["snr_db"] > 20
    assert summary["duration_s"] == pytest.approx(2.5, abs=0.05)
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48_000, 1, 2)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64) / 32767
    assert len(audio) / 48_000 == pytest.approx(2.5, abs=0.05)
    assert dominant_frequency(audio[4_800:], 48_000) == pytest.approx(1_000, rel=1e-3)
    assert sine_fit(audio[4_800:], 1_000, 48_000)[1] > 35


def test_demod_of_noise_says_no_carrier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "noise.cs16"
    path.write_bytes(to_bytes(make_iq([], 240_000, 480_000, noise_dbfs=-20), "cs16"))
    argv = [
        "fm",
        "demod",
        "--input",
        str(path),
        "--format",
        "cs16",
        "--sample-rate",
        "240000",
        "--offset",
        "0",
    ]
    code, stdout = run_loa(
        [*argv, "--out", str(tmp_path / "n.wav"), "--json", "--deemphasis", "75us"], capsys
    )
    summary = json.loads(stdout)
    assert code == 0 and summary["carrier"] is False and summary["carrier_fraction"] == 0
    assert summary["snr_db"] < 5 and summary["deemphasis_us"] == 75


def test_demod_refuses_unsupported_rate_and_missing_input(recording: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_fm_commands(parser.add_subparsers())
    base = ["fm", "demod", "--format", "cu8", "--offset", "0", "--out", str(tmp_path / "x.wav")]
    args = parser.parse_args([*base, "--input", str(recording), "--sample-rate", "1000000"])
    with pytest.raises(FmParameterError, match="1000000 Hz is not supported"):
        args.func(args)
    args = parser.parse_args([*base, "--input", str(tmp_path / "none.cu8"), "--sample-rate", "1024000"])
    with pytest.raises(FmParameterError, match="does not exist"):
        args.func(args)


def test_scan_lists_simulated_carriers(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout = run_loa(
        ["fm", "scan", "--simulate", "99.1MHz:-12,102.7MHz:-26,88.0MHz:-20", "--json"], capsys
    )
    carriers = json.loads(stdout)["carriers"]
    assert code == 0
    assert [c["frequency_hz"] for c in carriers] == [99_100_000, 88_000_000, 102_700_000]
    assert [c["level_dbfs"] for c in carriers] == pytest.approx([-12, -20, -26], abs=1.5)


def test_frequency_arguments() -> None:
    assert parse_hz("-250000") == -250_000
    assert parse_hz("250kHz") == 250_000
    assert parse_hz("99.1 MHz") == pytest.approx(99.1e6)
    assert parse_hz("1.024M") == pytest.approx(1.024e6)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_hz("99.1 furlongs")


def test_python_dash_m_entry(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.wav"
    argv = ["fm", "demod", "--input", str(recording), "--format", "cu8", "--sample-rate", "1024000"]
    result = subprocess.run(
        [sys.executable, "-m", "fm_receiver.cli", *argv, "--offset", "-250000", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["carrier"] is True
    bad = subprocess.run(
        [sys.executable, "-m", "fm_receiver.cli", *argv[:-1], "999", "--offset", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "999 Hz is not supported" in bad.stderr
