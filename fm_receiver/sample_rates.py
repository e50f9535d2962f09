"""Which input sample rates and station offsets the FM demodulator accepts: the rule, without numpy.

The demodulator (:mod:`fm_receiver.dsp`) filters the channel and decimates by a whole factor of 1
to 12 to an intermediate rate of 240 or 256 kS/s, from which both the 15 kHz audio filter and the
48 kHz resampler are designed; the station's ±100 kHz channel must lie inside the sampled band.
The rule lives here, apart from the DSP, so that ``agent.config`` can refuse a rate the receiver
would refuse without importing numpy (the daemon loads numpy only when FM is configured).
"""

from __future__ import annotations

from foundation.errors import LoaError

__all__ = [
    "CHANNEL_PASS_HZ",
    "INTERMEDIATE_RATES",
    "MAX_DECIMATION",
    "RATE_RULE",
    "SUPPORTED_SAMPLE_RATES",
    "FmParameterError",
    "intermediate_rate",
    "is_supported_rate",
    "max_offset_hz",
    "nearest_supported_rates",
]

CHANNEL_PASS_HZ = 100_000.0  # the station's channel: this far either side of it must be sampled
INTERMEDIATE_RATES = (240_000, 256_000)
MAX_DECIMATION = 12
SUPPORTED_SAMPLE_RATES: tuple[int, ...] = tuple(
    sorted({rate * d for rate in INTERMEDIATE_RATES for d in range(1, MAX_DECIMATION + 1)})
)
RATE_RULE = f"240000 or 256000 times 1 to {MAX_DECIMATION}"


class FmParameterError(LoaError, ValueError):
    """A demodulator parameter or an IQ format is not supported."""

    exit_code = 2


def intermediate_rate(sample_rate: int) -> tuple[int, int]:
    """Return ``(intermediate_rate, decimation)`` for an input rate, or raise FmParameterError."""
    for rate in INTERMEDIATE_RATES:
        decimation, rest = divmod(sample_rate, rate)
        if rest == 0 and 1 <= decimation <= MAX_DECIMATION:
            return rate, decimation
    raise FmParameterError(
        f"FM demodulator: sample rate {sample_rate} Hz is not supported: use 240000 or 256000 Hz "
        f"times 1..{MAX_DECIMATION} (e.g. 240000, 1024000, 1200000, 2048000)"
    )


def is_supported_rate(sample_rate: int) -> bool:
    """Whether :class:`fm_receiver.dsp.FmDemodulator` accepts ``sample_rate`` (S/s)."""
    try:
        intermediate_rate(sample_rate)
    except FmParameterError:
        return False
    return True


def max_offset_hz(sample_rate: float) -> float:
    """The largest |station offset| the demodulator accepts at ``sample_rate`` (negative: none)."""
    return sample_rate / 2 - CHANNEL_PASS_HZ


def nearest_supported_rates(
    sample_rate: int, candidates: tuple[int, ...] = SUPPORTED_SAMPLE_RATES
) -> list[int]:
    """The supported rates just below and just above ``sample_rate`` among ``candidates``."""
    below = [rate for rate in candidates if rate < sample_rate]
    above = [rate for rate in candidates if rate > sample_rate]
    return [*below[-1:], *above[:1]]
