"""Kaiser-window FIR low-pass design in numpy alone.

The FM receiver needs only two filter designs, done once per demodulator, and importing
``scipy.signal`` for them would more than double the daemon's resident memory.  The formulas are
Kaiser's (J. F. Kaiser, "Nonrecursive digital filter design using the I0-sinh window function",
1974, and Oppenheim & Schafer, *Discrete-Time Signal Processing*, eq. 7.62-7.63).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from foundation.errors import LoaError

__all__ = ["FilterDesignError", "kaiser_beta", "kaiser_lowpass", "kaiser_order", "lowpass_taps"]


class FilterDesignError(LoaError, ValueError):
    """A filter specification cannot be met (attenuation too small, band edges out of range)."""

    exit_code = 2


def kaiser_beta(attenuation_db: float) -> float:
    """The Kaiser window's beta giving ``attenuation_db`` of stop-band attenuation."""
    a = attenuation_db
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


def kaiser_order(attenuation_db: float, width: float) -> tuple[int, float]:
    """Return ``(numtaps, beta)`` for ``attenuation_db`` over a transition ``width`` (1.0 = Nyquist)."""
    a = abs(attenuation_db)
    if a < 8:
        raise FilterDesignError(
            f"FIR design: attenuation {a} dB is too small for Kaiser's formulas (>= 8 dB)"
        )
    if not width > 0:
        raise FilterDesignError(f"FIR design: transition width {width} must be positive")
    numtaps = (a - 7.95) / 2.285 / (math.pi * width) + 1
    return math.ceil(numtaps), kaiser_beta(a)


def kaiser_lowpass(
    numtaps: int, cutoff_hz: float, beta: float, sample_rate: float
) -> npt.NDArray[np.float64]:
    """Linear-phase windowed-sinc low-pass cut at ``cutoff_hz`` (-6 dB), scaled to unity gain at DC."""
    nyquist = sample_rate / 2
    if not 0 < cutoff_hz < nyquist:
        raise FilterDesignError(f"FIR design: cutoff {cutoff_hz} Hz is not in (0, {nyquist}) Hz")
    if numtaps < 1:
        raise FilterDesignError(f"FIR design: {numtaps} taps; need at least 1")
    cutoff = cutoff_hz / nyquist
    m = np.arange(numtaps) - (numtaps - 1) / 2
    taps = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    taps /= taps.sum()
    return taps


def lowpass_taps(
    pass_hz: float, stop_hz: float, attenuation_db: float, sample_rate: float
) -> npt.NDArray[np.float64]:
    """Odd-length Kaiser low-pass: pass band to ``pass_hz``, ``attenuation_db`` from ``stop_hz``."""
    if not 0 < pass_hz < stop_hz:
        raise FilterDesignError(f"FIR design: pass edge {pass_hz} Hz must be in (0, stop edge {stop_hz} Hz)")
    numtaps, beta = kaiser_order(attenuation_db, (stop_hz - pass_hz) / (sample_rate / 2))
    # An odd length keeps the filter type I (a whole-sample delay, no forced zero at Nyquist).
    return kaiser_lowpass(numtaps | 1, (pass_hz + stop_hz) / 2, beta, sample_rate)
