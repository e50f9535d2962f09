"""Signal quality of the received channel and the carrier / no-carrier decision.

Level: mean power of the channel-filtered baseband (±100 kHz) relative to full scale, where a
complex sinusoid of amplitude 1.0 (cu8 0/255 swing, cs16 ±32768) is 0 dBFS.

SNR: a carrier-to-noise ratio from the second and fourth moments of the channel samples (the
"M2M4" estimator).  An FM carrier has a constant envelope, complex Gaussian noise does not:
with S the carrier power and N the noise power, E|x|² = S + N and E|x|⁴ = S² + 4SN + 2N², so
S = sqrt(2·M2² − M4).  It needs no knowledge of the programme (silence between bulletins does not
close the squelch), no calibrated level and no clean adjacent channel, which in a crowded band is
often another station.  Interference that survives the channel filter counts as noise.  Noise alone
reads about −10 dB or lower; a usable broadcast reads 15 dB and more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["CarrierChange", "CarrierDetector", "ChannelMeasurement", "ChannelMeter", "cnr_db", "level_dbfs"]

FLOOR_DB = -150.0
_SNR_CEILING_DB = 60.0


def level_dbfs(mean_power: float) -> float:
    """Mean power of a complex signal (1.0 = full-scale complex sinusoid) in dBFS."""
    return 10 * math.log10(mean_power) if mean_power > 0 else FLOOR_DB


def cnr_db(m2: float, m4: float) -> float:
    """Carrier-to-noise ratio in dB from the moments M2 = E|x|², M4 = E|x|⁴ (see module doc)."""
    if m2 <= 0:
        return -_SNR_CEILING_DB
    carrier = math.sqrt(max(2 * m2 * m2 - m4, 0.0))
    noise = m2 - carrier
    if carrier <= 0:
        return -_SNR_CEILING_DB
    if noise <= carrier * 10 ** (-_SNR_CEILING_DB / 10):
        return _SNR_CEILING_DB
    return 10 * math.log10(carrier / noise)


@dataclass(frozen=True)
class ChannelMeasurement:
    """Quality of the channel over ``duration_s`` seconds of samples."""

    level_dbfs: float
    snr_db: float
    duration_s: float


class ChannelMeter:
    """Accumulates channel moments between two :meth:`take` calls."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._sum2 = 0.0
        self._sum4 = 0.0
        self._count = 0

    def add(self, baseband: npt.NDArray[np.complex64]) -> None:
        power = baseband.real * baseband.real + baseband.imag * baseband.imag
        self._sum2 += float(np.sum(power, dtype=np.float64))
        self._sum4 += float(np.dot(power, power))
        self._count += len(power)

    def take(self) -> ChannelMeasurement | None:
        """Return the measurement since the last call (None if no samples) and start anew."""
        if self._count == 0:
            return None
        m2, m4 = self._sum2 / self._count, self._sum4 / self._count
        result = ChannelMeasurement(level_dbfs(m2), cnr_db(m2, m4), self._count / self.sample_rate)
        self._sum2 = self._sum4 = 0.0
        self._count = 0
        return result


@dataclass(frozen=True)
class CarrierChange:
    """The detector's decision changed; ``at_s`` is stream time (seconds of samples seen)."""

    present: bool
    level: float
    snr_db: float
    at_s: float


class CarrierDetector:
    """Carrier present / absent with hysteresis, timed in sample time (not wall time).

    The carrier opens once SNR >= ``open_snr_db`` and level >= ``min_level`` have held for
    ``open_hold_s``; it closes once SNR < ``close_snr_db`` or level < ``min_level`` have held for
    ``close_hold_s``.  ``level`` is dBFS for the SDR, the tuner's RSSI unit for a tuner module.
    :meth:`clean` says whether the last measurement alone is good enough to pass audio: the
    receiver mutes a bad block at once, while the state (and the amplifiers) follow the hold times.
    """

    def __init__(
        self,
        *,
        open_snr_db: float = 12.0,
        close_snr_db: float = 8.0,
        min_level: float = -70.0,
        open_hold_s: float = 1.0,
        close_hold_s: float = 0.5,
    ) -> None:
        if close_snr_db > open_snr_db:
            raise ValueError(f"squelch: close_snr_db {close_snr_db} is above open_snr_db {open_snr_db}")
        self.open_snr_db, self.close_snr_db = open_snr_db, close_snr_db
        self.min_level = min_level
        self.open_hold_s, self.close_hold_s = open_hold_s, close_hold_s
        self.reset()

    def reset(self) -> None:
        self.present = False
        self.clean = False
        self.elapsed_s = 0.0
        self._pending_s = 0.0

    def update(self, level: float, snr_db: float, duration_s: float) -> CarrierChange | None:
        """Feed one measurement covering ``duration_s`` of signal; returns a change or None."""
        self.elapsed_s += duration_s
        above_floor = level >= self.min_level
        self.clean = above_floor and snr_db >= self.close_snr_db
        if self.present:
            wants_change, hold = not self.clean, self.close_hold_s
        else:
            wants_change, hold = above_floor and snr_db >= self.open_snr_db, self.open_hold_s
        self._pending_s = self._pending_s + duration_s if wants_change else 0.0
        if not wants_change or self._pending_s < hold - 1e-9:  # sums of block durations round
            return None
        self.present = not self.present
        self._pending_s = 0.0
        return CarrierChange(self.present, level, snr_db, self.elapsed_s)
