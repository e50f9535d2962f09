"""fm_receiver.fir_design against scipy.signal (kaiserord, kaiser_beta, firwin) and on its own response."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

from fm_receiver.dsp import (
    AUDIO_PASS_HZ,
    AUDIO_STOP_HZ,
    CHANNEL_PASS_HZ,
    CHANNEL_STOP_HZ,
    SUPPORTED_SAMPLE_RATES,
)
from fm_receiver.fir_design import (
    FilterDesignError,
    kaiser_beta,
    kaiser_lowpass,
    kaiser_order,
    lowpass_taps,
)

TOLERANCE = 1e-12


def scipy_lowpass(pass_hz: float, stop_hz: float, attenuation_db: float, rate: float) -> np.ndarray:
    """What fm_receiver.dsp computed with scipy.signal before fir_design existed."""
    numtaps, beta = signal.kaiserord(attenuation_db, (stop_hz - pass_hz) / (rate / 2))
    return signal.firwin(numtaps | 1, (pass_hz + stop_hz) / 2, window=("kaiser", beta), fs=rate)


@pytest.mark.parametrize("attenuation", [8.0, 15.0, 21.0, 21.5, 35.0, 50.0, 50.5, 60.0, 65.0, 100.0])
def test_beta_matches_scipy_in_every_branch_of_kaiser_formula(attenuation: float) -> None:
    assert kaiser_beta(attenuation) == pytest.approx(signal.kaiser_beta(attenuation), abs=TOLERANCE)


@given(
    attenuation=st.floats(min_value=8.0, max_value=140.0),
    width=st.floats(min_value=1e-3, max_value=0.9),
)
def test_order_matches_scipy_kaiserord(attenuation: float, width: float) -> None:
    numtaps, beta = kaiser_order(attenuation, width)
    expected_numtaps, expected_beta = signal.kaiserord(attenuation, width)
    assert numtaps == expected_numtaps
    assert beta == pytest.approx(expected_beta, abs=TOLERANCE)


@given(
    numtaps=st.integers(min_value=1, max_value=801),
    cutoff=st.floats(min_value=0.01, max_value=0.99),
    beta=st.floats(min_value=0.0, max_value=14.0),
)
def test_taps_match_scipy_firwin(numtaps: int, cutoff: float, beta: float) -> None:
    rate = 48_000.0
    taps = kaiser_lowpass(numtaps, cutoff * rate / 2, beta, rate)
    expected = signal.firwin(numtaps, cutoff * rate / 2, window=("kaiser", beta), fs=rate)
    assert taps.dtype == np.float64
    np.testing.assert_allclose(taps, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
def test_channel_filter_of_every_supported_rate_is_unchanged(rate: int) -> None:
    stop = min(CHANNEL_STOP_HZ, rate / 2)
    taps = lowpass_taps(CHANNEL_PASS_HZ, stop, 60.0, rate)
    np.testing.assert_allclose(taps, scipy_lowpass(CHANNEL_PASS_HZ, stop, 60.0, rate), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("rate", [240_000, 256_000])
def test_audio_filter_of_both_intermediate_rates_is_unchanged(rate: int) -> None:
    taps = lowpass_taps(AUDIO_PASS_HZ, AUDIO_STOP_HZ, 65.0, rate)
    expected = scipy_lowpass(AUDIO_PASS_HZ, AUDIO_STOP_HZ, 65.0, rate)
    np.testing.assert_allclose(taps, expected, rtol=0, atol=TOLERANCE)


def response_db(taps: np.ndarray, rate: float, n_fft: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    return freqs, 20 * np.log10(np.abs(np.fft.rfft(taps, n_fft)) + 1e-300)


@pytest.mark.parametrize(("pass_hz", "stop_hz", "attenuation"), [(15e3, 19e3, 65.0), (100e3, 125e3, 60.0)])
def test_lowpass_is_odd_symmetric_flat_in_band_and_meets_the_stop_band(
    pass_hz: float, stop_hz: float, attenuation: float
) -> None:
    rate = 256_000.0
    taps = lowpass_taps(pass_hz, stop_hz, attenuation, rate)
    assert len(taps) % 2 == 1
    np.testing.assert_allclose(taps, taps[::-1], rtol=0, atol=1e-15)
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)
    freqs, db = response_db(taps, rate)
    assert np.abs(db[freqs <= pass_hz]).max() < 0.01
    # Kaiser's order is an estimate: allow 1 dB short of the specification.
    assert db[freqs >= stop_hz].max() < -(attenuation - 1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kaiser_order(7.0, 0.1), "too small"),
        (lambda: kaiser_order(60.0, 0.0), "must be positive"),
        (lambda: kaiser_lowpass(11, 0.0, 5.0, 48_000), "cutoff"),
        (lambda: kaiser_lowpass(11, 24_000.0, 5.0, 48_000), "cutoff"),
        (lambda: kaiser_lowpass(0, 1_000.0, 5.0, 48_000), "taps"),
        (lambda: lowpass_taps(19e3, 15e3, 65.0, 48_000), "pass edge"),
    ],
)
def test_impossible_specifications_raise(call: Callable[[], object], message: str) -> None:
    with pytest.raises(FilterDesignError, match=message) as caught:
        call()
    assert isinstance(caught.value, ValueError)
