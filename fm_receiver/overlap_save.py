"""Stateful FIR filtering with rational down-sampling by FFT overlap-save.

The FM chain needs two long, sharp filters (the ~100 kHz channel filter and the 15 kHz audio
filter); in the time domain they would cost hundreds of multiply-adds per sample, far too much for
a Pi core.  Overlap-save makes the cost independent of the filter length, and down-sampling by
``up/down`` is done by keeping only the output band's FFT bins and running a shorter inverse FFT.

The stream is cut into fixed frames whatever the caller's block sizes, so the output does not depend
on how the input was split: samples that do not complete a frame wait for the next call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft as sfft

__all__ = ["OverlapSaveResampler"]


class OverlapSaveResampler:
    """FIR ``taps`` applied to a stream, then resampled by ``up/down`` (``up <= down``).

    The taps must already reject everything above the output Nyquist frequency: bins outside the
    output band are dropped, which is exact only for content the filter has removed.
    """

    def __init__(
        self, taps: npt.ArrayLike, up: int, down: int, *, complex_input: bool, min_fft: int = 4096
    ) -> None:
        g = math.gcd(up, down)
        self.up, self.down = up // g, down // g
        if self.up > self.down:
            raise ValueError(f"up-sampling {up}/{down} is not supported")
        h = np.asarray(taps, dtype=np.float64)
        self.complex_input = complex_input
        self.overlap = _round_up(len(h) - 1, self.down)
        # n_out must be even so that the kept band splits evenly around 0 Hz.
        step = 2 * self.down
        frames = sfft.next_fast_len(math.ceil(max(min_fft, 4 * self.overlap) / step), real=not complex_input)
        self.n_fft = step * frames
        self.n_out = self.n_fft * self.up // self.down
        self.hop = self.n_fft - self.overlap
        self.out_discard = self.overlap * self.up // self.down
        scale = self.up / self.down
        if complex_input:
            self._response = (sfft.fft(h, self.n_fft) * scale).astype(np.complex64)
        else:
            self._response = (sfft.rfft(h, self.n_fft) * scale).astype(np.complex64)
        self._dtype = np.complex64 if complex_input else np.float32
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample is preceded by zeros."""
        self._buffer = np.zeros(self.overlap, dtype=self._dtype)

    @property
    def pending(self) -> int:
        """Input samples held back until a frame is complete (beyond the overlap)."""
        return len(self._buffer) - self.overlap

    def process(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Filter and resample the next input block; returns every output sample now computable."""
        buf = np.concatenate((self._buffer, np.asarray(x, dtype=self._dtype)))
        n_frames = (len(buf) - self.overlap) // self.hop
        if n_frames <= 0:
            self._buffer = buf
            return np.zeros(0, dtype=self._dtype)
        frames = np.lib.stride_tricks.sliding_window_view(buf, self.n_fft)[:: self.hop][:n_frames]
        out = self._complex_frames(frames) if self.complex_input else self._real_frames(frames)
        self._buffer = buf[n_frames * self.hop :].copy()
        return out[:, self.out_discard :].reshape(-1)

    def _complex_frames(self, frames: npt.NDArray[Any]) -> npt.NDArray[Any]:
        spectrum = sfft.fft(frames, axis=1)
        spectrum *= self._response
        if self.n_out != self.n_fft:
            half = self.n_out // 2
            spectrum = np.concatenate((spectrum[:, :half], spectrum[:, -half:]), axis=1)
        result: npt.NDArray[Any] = sfft.ifft(spectrum, axis=1)
        return result

    def _real_frames(self, frames: npt.NDArray[Any]) -> npt.NDArray[Any]:
        spectrum = sfft.rfft(frames, axis=1)
        spectrum *= self._response
        spectrum = spectrum[:, : self.n_out // 2 + 1]
        result: npt.NDArray[Any] = sfft.irfft(spectrum, n=self.n_out, axis=1)
        return result


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
