"""A fake RTL-SDR dongle: FM carriers and noise as cu8, with stalls and open failures on demand.

Used by the tests, ``loa fm scan --simulate`` and the demo.  It records what it was asked to do
(``reads``, ``closed``, ``tuned``) so tests assert on behaviour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from foundation.errors import HardwareError

__all__ = ["FakeDongleFactory", "FakeRtlSdr"]

_TONE_HZ = 1_000.0
_DEVIATION_HZ = 30_000.0


class FakeRtlSdr:
    """Delivers ``stations`` ({frequency Hz: level dBFS}) carrying a 1 kHz tone, plus noise.

    ``stall_after_reads``: after that many reads, ``read_bytes`` blocks until ``close()`` (then
    raises OSError, as libusb does).  ``realtime`` paces reads like a real dongle.
    """

    def __init__(
        self,
        stations: Mapping[float, float] | None = None,
        *,
        noise_dbfs: float = -45.0,
        stall_after_reads: int | None = None,
        realtime: bool = True,
        seed: int = 0,
    ) -> None:
        self.stations = dict(stations or {})
        self.noise_dbfs = noise_dbfs
        self.stall_after_reads = stall_after_reads
        self.realtime = realtime
        self.sample_rate = 2_048_000.0
        self._center_freq = 100_000_000.0
        self.gain: float | str = "auto"
        self.freq_correction = 0
        self.reads = 0
        self.tuned: list[float] = []
        self.closed = threading.Event()
        self._rng = np.random.default_rng(seed)
        self._sample_index = 0

    @property
    def center_freq(self) -> float:
        return self._center_freq

    @center_freq.setter
    def center_freq(self, value: float) -> None:
        self._center_freq = float(value)
        self.tuned.append(self._center_freq)

    def read_bytes(self, num_bytes: int) -> bytes:
        if self.closed.is_set():
            raise OSError("fake dongle: read after close")
        if self.stall_after_reads is not None and self.reads >= self.stall_after_reads:
            self.closed.wait()
            raise OSError("fake dongle: transfer cancelled (device closed while stalled)")
        self.reads += 1
        n = num_bytes // 2
        if self.realtime:
            time.sleep(n / self.sample_rate)
        return _to_cu8(self._samples(n))

    def close(self) -> None:
        self.closed.set()

    def _samples(self, n: int) -> np.ndarray:
        rate = self.sample_rate
        t = (self._sample_index + np.arange(n)) / rate
        self._sample_index += n
        sigma = 10 ** (self.noise_dbfs / 20) / np.sqrt(2)
        iq = sigma * (self._rng.standard_normal(n) + 1j * self._rng.standard_normal(n))
        for freq, level in self.stations.items():
            offset = freq - self.center_freq
            if abs(offset) < rate / 2:
                beta = _DEVIATION_HZ / _TONE_HZ
                phase = 2 * np.pi * offset * t + beta * np.sin(2 * np.pi * _TONE_HZ * t)
                iq += 10 ** (level / 20) * np.exp(1j * phase)
        return iq


def _to_cu8(iq: np.ndarray) -> bytes:
    pairs = np.empty(2 * len(iq), dtype=np.float64)
    pairs[0::2], pairs[1::2] = iq.real, iq.imag
    return np.clip(np.round(pairs * 127.5 + 127.5), 0, 255).astype(np.uint8).tobytes()


class FakeDongleFactory:
    """A device factory handing out FakeRtlSdr objects, each scripted by ``stalls`` in turn.

    The first open always succeeds; the next ``fail_opens`` opens (reopen attempts) raise
    HardwareError, then devices are handed out again.
    """

    def __init__(
        self,
        stations: Mapping[float, float] | None = None,
        *,
        stalls: Sequence[int | None] = (),
        fail_opens: int = 0,
        noise_dbfs: float = -45.0,
        realtime: bool = True,
    ) -> None:
        self.stations = dict(stations or {})
        self.stalls = list(stalls)
        self.fail_opens = fail_opens
        self.noise_dbfs = noise_dbfs
        self.realtime = realtime
        self.devices: list[FakeRtlSdr] = []
        self.failed_opens = 0

    def __call__(self) -> FakeRtlSdr:
        index = len(self.devices) + self.failed_opens
        if index > 0 and self.failed_opens < self.fail_opens:
            self.failed_opens += 1
            raise HardwareError(f"fake dongle: open #{index} fails as scripted")
        stall = self.stalls[len(self.devices)] if len(self.devices) < len(self.stalls) else None
        device = FakeRtlSdr(
            self.stations,
            noise_dbfs=self.noise_dbfs,
            stall_after_reads=stall,
            realtime=self.realtime,
            seed=len(self.devices),
        )
        self.devices.append(device)
        return device
