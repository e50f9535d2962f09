"""Band scan with an RTL-SDR: which FM channels carry a station, and how strong.

The dongle steps through the band; at each step only channels between ``min_offset_hz`` above the
tuned centre (clear of the DC spike) and 40 % of the sample rate (clear of the anti-alias roll-off)
are measured.  A channel's level is the power within ±90 kHz of its frequency (dBFS, averaged
periodogram); the noise floor is the median over all channels, since most of the band is empty.
A channel is a carrier when it stands ``threshold_db`` above the floor and is the strongest within
±200 kHz (an FM signal spills into its neighbours on the 100 kHz raster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fm_receiver.dsp import iq_from_bytes
from fm_receiver.quality import FLOOR_DB
from fm_receiver.rtlsdr_source import RtlSdrDevice, configure_device

__all__ = ["ScanHit", "scan_band"]

_RASTER_HZ = 100_000
_HALF_CHANNEL_HZ = 90_000.0
_SEGMENT = 1024


@dataclass(frozen=True)
class ScanHit:
    frequency_hz: int
    level_dbfs: float
    above_floor_db: float


def scan_band(
    device: RtlSdrDevice,
    *,
    start_hz: int = 87_500_000,
    stop_hz: int = 108_000_000,
    sample_rate: int = 2_048_000,
    gain: float | str = "auto",
    dwell_samples: int = 131_072,
    min_offset_hz: float = 150_000.0,
    threshold_db: float = 10.0,
) -> list[ScanHit]:
    """Sweep ``device`` (already open) and return the carriers found, strongest first."""
    channels = np.arange(start_hz, stop_hz + 1, _RASTER_HZ)
    levels = np.full(len(channels), FLOOR_DB)
    usable = 0.4 * sample_rate - min_offset_hz
    steps = math.floor((stop_hz - start_hz) / usable) + 1
    for step in range(steps):
        center = start_hz - min_offset_hz + step * usable
        configure_device(device, sample_rate=sample_rate, center_hz=center, gain=gain)
        device.read_bytes(2 * 16_384)  # samples from before the retune
        iq = iq_from_bytes(device.read_bytes(2 * dwell_samples), "cu8")
        freqs, psd = _periodogram(iq, sample_rate)
        for index, channel in enumerate(channels):
            offset = channel - center
            if min_offset_hz <= offset <= 0.4 * sample_rate and levels[index] == FLOOR_DB:
                band = np.abs(freqs - offset) <= _HALF_CHANNEL_HZ
                levels[index] = 10 * math.log10(max(float(psd[band].sum()), 1e-15))
    return _pick_carriers(channels, levels, threshold_db)


def _periodogram(
    iq: npt.NDArray[np.complex64], sample_rate: int
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]:
    """Power per bin such that the bins sum to the mean power of ``iq`` (full scale = 1.0)."""
    segments = iq[: len(iq) // _SEGMENT * _SEGMENT].reshape(-1, _SEGMENT)
    window = np.hanning(_SEGMENT)
    spectra = np.abs(np.fft.fft(segments * window, axis=1)) ** 2
    psd: npt.NDArray[np.floating[Any]] = spectra.mean(axis=0) / (_SEGMENT * float(np.sum(window**2)))
    freqs: npt.NDArray[np.floating[Any]] = np.fft.fftfreq(_SEGMENT, 1 / sample_rate)
    return freqs, psd


def _pick_carriers(
    channels: npt.NDArray[np.int64], levels: npt.NDArray[np.float64], threshold_db: float
) -> list[ScanHit]:
    floor = float(np.median(levels))
    hits = []
    for index, level in enumerate(levels):
        neighbours = levels[max(index - 2, 0) : index + 3]
        if level - floor >= threshold_db and level >= neighbours.max():
            hits.append(ScanHit(int(channels[index]), round(float(level), 1), round(float(level - floor), 1)))
    return sorted(hits, key=lambda hit: hit.level_dbfs, reverse=True)
