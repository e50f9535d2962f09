"""Synthetic FM broadcast IQ for the FM receiver tests (independent of fm_receiver's code).

A station is an audio signal, pre-emphasised (exactly, in the frequency domain, like a broadcast
transmitter), frequency-modulated with 75 kHz = 1.0 and placed at an offset from the tuned centre.
Several stations and complex Gaussian noise add up to the IQ a dongle would deliver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEVIATION_HZ = 75_000.0

FloatArray = npt.NDArray[np.float64]


def tone(freq_hz: float, rate: int, duration_s: float, amplitude: float = 0.5) -> FloatArray:
    t = np.arange(round(rate * duration_s)) / rate
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def speech_like(rate: int, duration_s: float, seed: int = 7) -> FloatArray:
    """Harmonics of a gliding pitch under a syllable-rate envelope, plus a 300 Hz-4 kHz chirp."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * duration_s)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(rng.uniform(0.3, 1.0) / k * np.sin(k * phase + rng.uniform(0, 6.28)) for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) * np.sin(2 * np.pi * 0.9 * t + 1.0)
    chirp_freq = 300 + 3700 * (t % 1.0)
    chirp = 0.3 * np.sin(2 * np.pi * np.cumsum(chirp_freq) / rate)
    mix = envelope * voiced + chirp
    return np.asarray(0.6 * mix / np.max(np.abs(mix)), dtype=np.float64)


def preemphasize(audio: FloatArray, rate: int, tau_us: float) -> FloatArray:
    """Apply H(f) = 1 + j·2π·f·tau exactly (the transmitter's pre-emphasis)."""
    if tau_us <= 0:
        return audio
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    return np.fft.irfft(spectrum * (1 + 2j * np.pi * freqs * tau_us * 1e-6), n=len(audio))


@dataclass(frozen=True)
class Station:
    offset_hz: float
    audio: FloatArray  # at the IQ sample rate, 1.0 = 75 kHz deviation before pre-emphasis
    level_dbfs: float = -12.0
    preemphasis_us: float = 50.0


def fm_iq(station: Station, rate: int) -> npt.NDArray[np.complex128]:
    modulating = preemphasize(station.audio, rate, station.preemphasis_us)
    n = np.arange(len(modulating))
    phase = 2 * np.pi * (DEVIATION_HZ * np.cumsum(modulating) + station.offset_hz * n) / rate
    return 10 ** (station.level_dbfs / 20) * np.exp(1j * phase)


def make_iq(
    stations: Sequence[Station], rate: int, n: int, *, noise_dbfs: float = -45.0, seed: int = 1
) -> npt.NDArray[np.complex64]:
    """Sum of stations plus complex Gaussian noise of total power ``noise_dbfs`` over the whole band."""
    rng = np.random.default_rng(seed)
    sigma = 10 ** (noise_dbfs / 20) / np.sqrt(2)
    iq = sigma * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    for station in stations:
        iq += fm_iq(station, rate)[:n]
    return iq.astype(np.complex64)


def to_bytes(iq: npt.NDArray[np.complex64], fmt: str) -> bytes:
    """Encode IQ as rtl_sdr's cu8, cs16 little-endian, or cf32."""
    pairs = iq.view(np.float32)
    if fmt == "cu8":
        return np.clip(np.round(pairs * 127.5 + 127.5), 0, 255).astype(np.uint8).tobytes()
    if fmt == "cs16":
        return np.clip(np.round(pairs * 32768), -32768, 32767).astype("<i2").tobytes()
    return pairs.astype("<f4").tobytes()


def sine_fit(x: FloatArray, freq_hz: float, rate: int) -> tuple[float, float]:
    """Least-squares amplitude of a sinusoid at ``freq_hz`` and the SNR (dB) of x against it."""
    t = np.arange(len(x)) / rate
    basis = np.column_stack(
        (np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t), np.ones_like(t))
    )
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fitted = basis @ coef
    residual = x - fitted
    amplitude = float(np.hypot(coef[0], coef[1]))
    snr = 10 * np.log10((amplitude**2 / 2) / np.mean(residual**2))
    return amplitude, float(snr)


def dominant_frequency(x: FloatArray, rate: int) -> float:
    """Frequency of the strongest spectral peak, refined by parabolic interpolation."""
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + shift) * rate / len(x))
