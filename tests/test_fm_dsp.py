"""FmDemodulator on synthetic broadcasts (tests/fm_synth.py): pitch, SNR, fidelity, de-emphasis, blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from fm_receiver.dsp import (
    SUPPORTED_SAMPLE_RATES,
    FmDemodulator,
    FmParameterError,
    intermediate_rate,
    iq_from_bytes,
)
from tests.fm_synth import Station, dominant_frequency, make_iq, sine_fit, speech_like, to_bytes, tone

AUDIO_RATE = 48_000
SETTLE = 4_800  # first 0.1 s of audio: filters filling up


def demodulate(iq: np.ndarray, rate: int, offset: float, **kwargs: float) -> np.ndarray:
    demod = FmDemodulator(rate, offset, **kwargs)  # type: ignore[arg-type]
    return demod.process(iq).astype(np.float64)


# Station off-centre, a second station 300 kHz away (6 dB stronger), noise, 8-bit quantisation.
SCENES = {
    240_000: (15_000.0, None),
    1_024_000: (250_000.0, -50_000.0),
}


@pytest.mark.parametrize("rate", sorted(SCENES))
def test_tone_has_right_pitch_and_snr_above_40_db(rate: int) -> None:
    offset, neighbour = SCENES[rate]
    n = int(rate * 1.5)
    stations = [Station(offset, tone(1_000, rate, 1.5, 0.5), level_dbfs=-12)]
    if neighbour is not None:
        stations.append(Station(neighbour, speech_like(rate, 1.5), level_dbfs=-6))
    iq = iq_from_bytes(to_bytes(make_iq(stations, rate, n, noise_dbfs=-40), "cu8"), "cu8")
    audio = demodulate(iq, rate, offset)[SETTLE:]
    amplitude, snr = sine_fit(audio, 1_000, AUDIO_RATE)
    assert dominant_frequency(audio, AUDIO_RATE) == pytest.approx(1_000, rel=1e-3)
    assert snr > 40
    assert amplitude == pytest.approx(0.5, abs=0.01)  # 75 kHz deviation = 1.0, pre/de-emphasis flat


@pytest.mark.parametrize("rate", sorted(SCENES))
def test_speech_like_audio_correlates_with_the_source(rate: int) -> None:
    offset, neighbour = SCENES[rate]
    n = rate * 2
    source = speech_like(rate, 2.0, seed=3)
    stations = [Station(offset, source, level_dbfs=-15)]
    if neighbour is not None:
        stations.append(Station(neighbour, tone(700, rate, 2.0), level_dbfs=-10))
    audio = demodulate(make_iq(stations, rate, n, noise_dbfs=-40), rate, offset)
    reference = signal.resample_poly(source, AUDIO_RATE, rate)
    lag = _best_lag(audio, reference)
    out = audio[SETTLE + lag : SETTLE + lag + 60_000]
    ref = reference[SETTLE : SETTLE + 60_000]
    assert np.corrcoef(out, ref)[0, 1] > 0.99


def _best_lag(audio: np.ndarray, reference: np.ndarray) -> int:
    """Delay of ``audio`` behind ``reference`` (the filters' group delay), in samples."""
    segment = reference[SETTLE : SETTLE + 20_000]
    scores = [float(np.dot(audio[SETTLE + lag : SETTLE + lag + 20_000], segment)) for lag in range(0, 400)]
    return int(np.argmax(scores))


@pytest.mark.parametrize("tau_us", [50.0, 75.0])
@pytest.mark.parametrize("freq", [1_000, 3_000, 10_000])
def test_deemphasis_follows_the_single_pole_curve_within_1_db(freq: int, tau_us: float) -> None:
    rate = 1_024_000
    station = Station(0.0, tone(freq, rate, 0.5, 0.3), level_dbfs=-10, preemphasis_us=0)
    audio = demodulate(make_iq([station], rate, rate // 2, noise_dbfs=-70), rate, 0.0, deemphasis_us=tau_us)
    amplitude, _ = sine_fit(audio[SETTLE:], freq, AUDIO_RATE)
    measured_db = 20 * math.log10(amplitude / 0.3)
    expected_db = -10 * math.log10(1 + (2 * math.pi * freq * tau_us * 1e-6) ** 2)
    assert measured_db == pytest.approx(expected_db, abs=1.0)
    assert measured_db == pytest.approx(expected_db, abs=0.2)  # in fact much closer than required


def test_pilot_at_19_khz_is_rejected() -> None:
    rate = 240_000
    station = Station(0.0, tone(19_000, rate, 0.5, 0.1), level_dbfs=-10, preemphasis_us=0)
    audio = demodulate(make_iq([station], rate, rate // 2, noise_dbfs=-70), rate, 0.0)
    amplitude, _ = sine_fit(audio[SETTLE:], 19_000, AUDIO_RATE)
    assert 20 * math.log10(amplitude / 0.1) < -50


@pytest.mark.parametrize("rate", [240_000, 1_024_000, 1_200_000, 2_048_000])
def test_block_sizes_do_not_change_the_output(rate: int) -> None:
    offset = min(0.2 * rate, rate / 2 - 100_000) - 5_000
    iq = make_iq([Station(offset, speech_like(rate, 0.4))], rate, int(rate * 0.4))
    whole = FmDemodulator(rate, offset).process(iq)
    rng = np.random.default_rng(rate)
    cuts = np.sort(rng.choice(np.arange(1, len(iq)), size=60, replace=False))
    cuts = np.concatenate((cuts, [cuts[0] + 1, cuts[0] + 2]))  # some one-sample blocks too
    demod = FmDemodulator(rate, offset)
    pieces = [demod.process(block) for block in np.split(iq, np.unique(cuts))]
    blocked = np.concatenate(pieces)
    assert len(blocked) == len(whole) > 0.35 * AUDIO_RATE
    assert np.max(np.abs(blocked - whole)) < 1e-5


def test_noise_only_reads_low_snr() -> None:
    rate = 1_024_000
    iq = iq_from_bytes(to_bytes(make_iq([], rate, rate, noise_dbfs=-25), "cu8"), "cu8")
    demod = FmDemodulator(rate, 250_000)
    demod.process(iq)
    measurement = demod.meter.take()
    assert measurement is not None
    assert measurement.snr_db < 3
    assert measurement.level_dbfs == pytest.approx(-25 + 10 * math.log10(200e3 / rate), abs=1.5)


def test_channel_level_is_station_power_in_dbfs() -> None:
    rate = 1_024_000
    demod = FmDemodulator(rate, 250_000)
    demod.process(make_iq([Station(250_000, tone(1_000, rate, 0.5), level_dbfs=-20)], rate, rate // 2))
    measurement = demod.meter.take()
    assert measurement is not None
    assert measurement.level_dbfs == pytest.approx(-20, abs=0.5)
    assert measurement.snr_db > 20


def test_iq_formats_decode_to_the_same_samples() -> None:
    iq = np.array([0.5 - 0.25j, -1 + 0j, 0.0 + 0.999j], dtype=np.complex64)
    for fmt, tolerance in (("cu8", 1 / 127), ("cs16", 1e-4), ("cf32", 0.0)):
        decoded = iq_from_bytes(to_bytes(iq, fmt), fmt)
        assert decoded.dtype == np.complex64
        np.testing.assert_allclose(decoded, iq, atol=tolerance)
    assert iq_from_bytes(bytes([0, 255, 127, 128]), "cu8")[0] == pytest.approx(-1 + 1j)


def test_bad_iq_input_is_refused() -> None:
    with pytest.raises(FmParameterError, match="format 'u8'"):
        iq_from_bytes(b"\x00\x00", "u8")
    with pytest.raises(FmParameterError, match="whole number"):
        iq_from_bytes(b"\x00\x00\x00", "cu8")


def test_supported_rates_and_refusals() -> None:
    assert {240_000, 1_024_000, 1_200_000, 2_048_000, 2_400_000} <= set(SUPPORTED_SAMPLE_RATES)
    assert intermediate_rate(1_024_000) == (256_000, 4)
    assert intermediate_rate(1_200_000) == (240_000, 5)
    with pytest.raises(FmParameterError, match="1000000 Hz is not supported"):
        FmDemodulator(1_000_000, 0)
    with pytest.raises(FmParameterError, match="outside"):
        FmDemodulator(1_024_000, 450_000)
