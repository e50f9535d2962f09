"""Channel quality estimates and the carrier detector's hysteresis, timed in sample time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fm_receiver.quality import CarrierDetector, ChannelMeter, cnr_db, level_dbfs


def _carrier_plus_noise(snr_db: float, n: int = 200_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = np.cumsum(rng.uniform(-0.5, 0.5, n))  # any modulation: only the envelope matters
    noise_sigma = np.sqrt(10 ** (-snr_db / 10) / 2)
    noise = noise_sigma * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    return (0.1 * (np.exp(1j * phase) + noise)).astype(np.complex64)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 30.0])
def test_moment_estimator_recovers_the_carrier_to_noise_ratio(snr_db: float) -> None:
    meter = ChannelMeter(200_000)
    meter.add(_carrier_plus_noise(snr_db))
    measurement = meter.take()
    assert measurement is not None
    assert measurement.snr_db == pytest.approx(snr_db, abs=1.0)
    assert measurement.level_dbfs == pytest.approx(-20 + 10 * np.log10(1 + 10 ** (-snr_db / 10)), abs=0.2)
    assert measurement.duration_s == pytest.approx(1.0)
    assert meter.take() is None  # take() starts a new window


def test_noise_alone_reads_far_below_the_squelch() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        noise = (rng.standard_normal(20_000) + 1j * rng.standard_normal(20_000)).astype(np.complex64)
        power = noise.real**2 + noise.imag**2
        assert cnr_db(float(power.mean()), float((power**2).mean())) < 2.0


def test_level_of_full_scale_sinusoid_is_zero_dbfs() -> None:
    assert level_dbfs(1.0) == 0.0
    assert level_dbfs(0.01) == pytest.approx(-20.0)
    assert level_dbfs(0.0) < -100


def test_detector_opens_after_hold_and_closes_after_hold() -> None:
    detector = CarrierDetector(
        open_snr_db=12, close_snr_db=8, min_level=-70, open_hold_s=1.0, close_hold_s=0.5
    )
    assert [detector.update(-30, 20, 0.1) for _ in range(9)] == [None] * 9
    change = detector.update(-30, 20, 0.1)
    assert change is not None and change.present and change.at_s == pytest.approx(1.0)
    assert detector.update(-30, 10, 0.1) is None  # between thresholds: stays open (hysteresis)
    assert detector.clean
    assert detector.update(-30, 5, 0.2) is None
    assert not detector.clean  # a bad block is muted at once
    assert detector.update(-30, 5, 0.2) is None
    change = detector.update(-30, 5, 0.2)
    assert change is not None and not change.present


def test_a_good_measurement_interrupts_the_close_hold() -> None:
    detector = CarrierDetector(open_hold_s=0.0, close_hold_s=0.5)
    assert detector.update(-30, 20, 0.1) is not None
    for _ in range(10):
        assert detector.update(-30, 5, 0.3) is None
        assert detector.update(-30, 20, 0.1) is None
    assert detector.present


def test_weak_level_keeps_the_carrier_closed_whatever_the_snr() -> None:
    detector = CarrierDetector(min_level=-60, open_hold_s=0.0)
    assert detector.update(-65, 40, 5.0) is None
    assert not detector.present


def test_thresholds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="close_snr_db"):
        CarrierDetector(open_snr_db=5, close_snr_db=10)


@given(st.lists(st.tuples(st.floats(-40, 40), st.floats(0.01, 0.5)), max_size=60))
def test_detector_never_opens_without_hold_of_good_measurements(samples: list[tuple[float, float]]) -> None:
    detector = CarrierDetector(open_snr_db=12, close_snr_db=8, open_hold_s=1.0, close_hold_s=0.5)
    good_run = 0.0
    for snr, duration in samples:
        good_run = good_run + duration if snr >= 12 else 0.0
        was_present = detector.present
        change = detector.update(-30, snr, duration)
        if change is not None and change.present:
            assert not was_present and good_run >= 1.0 - 1e-6
        assert change is None or change.present == detector.present
