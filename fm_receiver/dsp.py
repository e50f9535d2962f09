"""Wide-band FM demodulation from complex baseband to mono audio, stateful across blocks.

Pipeline (see docs/FM.md): shift the station to 0 Hz (NCO) → channel low-pass (100 kHz pass,
125 kHz stop) and decimation to an intermediate rate of 240 or 256 kS/s → polar discriminator
scaled so that 75 kHz deviation reads 1.0 → one audio filter combining the 15 kHz low-pass (19 kHz
pilot rejected) and the de-emphasis → resampling to the audio rate.  Both filters run by FFT
overlap-save (:mod:`fm_receiver.overlap_save`), so their length costs nothing and the output does
not depend on how the input is split into blocks.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from fm_receiver.fir_design import lowpass_taps
from fm_receiver.overlap_save import OverlapSaveResampler
from fm_receiver.quality import ChannelMeter
from fm_receiver.sample_rates import (
    CHANNEL_PASS_HZ,
    SUPPORTED_SAMPLE_RATES,
    FmParameterError,
    intermediate_rate,
    max_offset_hz,
)

__all__ = [
    "CHANNEL_PASS_HZ",
    "IQ_FORMATS",
    "SUPPORTED_SAMPLE_RATES",
    "FmDemodulator",
    "FmParameterError",
    "intermediate_rate",
    "iq_from_bytes",
]

IqFormat = Literal["cu8", "cs16", "cf32"]
IQ_FORMATS: dict[str, int] = {"cu8": 2, "cs16": 4, "cf32": 8}  # bytes per complex sample
MAX_DEVIATION_HZ = 75_000.0
CHANNEL_STOP_HZ = 125_000.0
AUDIO_PASS_HZ = 15_000.0
AUDIO_STOP_HZ = 19_000.0  # the stereo pilot must not reach the loudspeakers
_CU8_SCALE = np.float32(1 / 127.5)


def iq_from_bytes(buf: bytes | bytearray | memoryview, fmt: str) -> npt.NDArray[np.complex64]:
    """Convert raw interleaved I/Q bytes (cu8 as rtl_sdr writes, cs16 LE, cf32) to complex64."""
    size = IQ_FORMATS.get(fmt)
    if size is None:
        raise FmParameterError(f"IQ format {fmt!r} is not supported: expected one of {', '.join(IQ_FORMATS)}")
    if len(buf) % size:
        raise FmParameterError(f"IQ buffer of {len(buf)} bytes is not a whole number of {fmt} samples")
    if fmt == "cu8":
        raw = np.frombuffer(buf, dtype=np.uint8).astype(np.float32)
        raw -= np.float32(127.5)
        raw *= _CU8_SCALE
        return raw.view(np.complex64)
    if fmt == "cs16":
        pairs = np.frombuffer(buf, dtype="<i2").astype(np.float32)
        pairs *= np.float32(1 / 32768)
        return pairs.view(np.complex64)
    return np.frombuffer(buf, dtype="<f4").astype(np.float32).view(np.complex64)


class _Nco:
    """Multiplies a stream by exp(j*2*pi*freq*n/fs) with a phase carried across blocks."""

    _CHUNK = 4096

    def __init__(self, cycles_per_sample: float) -> None:
        self._step = 2 * math.pi * cycles_per_sample
        self._table = np.exp(1j * self._step * np.arange(self._CHUNK)).astype(np.complex64)
        self._phase = 0.0

    def reset(self) -> None:
        self._phase = 0.0

    def mix(self, x: npt.NDArray[np.complex64]) -> npt.NDArray[np.complex64]:
        n = len(x)
        chunks = -(-n // self._CHUNK)
        starts = self._phase + self._step * self._CHUNK * np.arange(chunks)
        padded = np.zeros(chunks * self._CHUNK, dtype=np.complex64)
        padded[:n] = x
        grid = padded.reshape(chunks, self._CHUNK)
        grid *= self._table
        grid *= np.exp(1j * starts).astype(np.complex64)[:, None]
        self._phase = math.remainder(self._phase + self._step * n, 2 * math.pi)
        return padded[:n]


def _channel_taps(sample_rate: int) -> npt.NDArray[np.float64]:
    stop = min(CHANNEL_STOP_HZ, sample_rate / 2)
    return lowpass_taps(CHANNEL_PASS_HZ, stop, 60.0, sample_rate)


def _audio_taps(rate: int, deemphasis_us: float) -> npt.NDArray[np.float64]:
    """15 kHz low-pass convolved with the single-pole de-emphasis (impulse invariant)."""
    lowpass = lowpass_taps(AUDIO_PASS_HZ, AUDIO_STOP_HZ, 65.0, rate)
    if deemphasis_us <= 0:
        return lowpass
    pole = math.exp(-1e6 / (rate * deemphasis_us))
    length = math.ceil(math.log(1e-6) / math.log(pole))
    decay = (1 - pole) * pole ** np.arange(length)
    return np.convolve(lowpass, decay / decay.sum())


class FmDemodulator:
    """Mono wide-band FM demodulator: complex64 IQ blocks in, float32 audio blocks out."""

    def __init__(
        self,
        sample_rate: int,
        offset_hz: float,
        *,
        deemphasis_us: float = 50.0,
        audio_rate: int = 48_000,
    ) -> None:
        self.if_rate, decimation = intermediate_rate(int(sample_rate))
        if abs(offset_hz) > max_offset_hz(sample_rate):
            raise FmParameterError(
                f"FM demodulator: offset {offset_hz:.0f} Hz puts the channel outside the "
                f"{sample_rate} S/s band (|offset| must be <= {max_offset_hz(sample_rate):.0f} Hz)"
            )
        if not 2 * AUDIO_STOP_HZ <= audio_rate <= self.if_rate:
            raise FmParameterError(
                f"FM demodulator: audio rate {audio_rate} Hz is not in 38000..{self.if_rate}"
            )
        self.sample_rate = int(sample_rate)
        self.offset_hz = float(offset_hz)
        self.audio_rate = audio_rate
        self.deemphasis_us = deemphasis_us
        self._nco = _Nco(-offset_hz / sample_rate)
        self._channel = OverlapSaveResampler(
            _channel_taps(self.sample_rate), 1, decimation, complex_input=True, min_fft=8192
        )
        self._audio = OverlapSaveResampler(
            _audio_taps(self.if_rate, deemphasis_us), audio_rate, self.if_rate, complex_input=False
        )
        self._gain = np.float32(self.if_rate / (2 * math.pi * MAX_DEVIATION_HZ))
        self.meter = ChannelMeter(self.if_rate)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (after a source reopen): clears every filter and phase state."""
        self._nco.reset()
        self._channel.reset()
        self._audio.reset()
        self._previous = np.ones(1, dtype=np.complex64)
        self.meter.take()

    def process(self, iq: npt.NDArray[np.complex64]) -> npt.NDArray[np.float32]:
        """Demodulate the next block; the channel's power goes to :attr:`meter`."""
        baseband = self._channel.process(self._nco.mix(np.asarray(iq, dtype=np.complex64)))
        if len(baseband) == 0:
            return np.zeros(0, dtype=np.float32)
        self.meter.add(baseband)
        chain = np.concatenate((self._previous, baseband))
        self._previous = baseband[-1:].copy()
        product = chain[1:] * np.conj(chain[:-1])
        phase = np.arctan2(product.imag, product.real)
        phase *= self._gain
        return self._audio.process(phase).astype(np.float32, copy=False)
