"""A fake RTL-SDR dongle: FM carriers and noise as cu8, with stalls, unplugging and failed opens.

Used by the tests, ``loa fm scan --simulate`` and the demo.  It records what it was asked to do
(``reads``, ``closed``, ``tuned``) so tests assert on behaviour.  :class:`FakeDongleFactory` stands
in for :func:`fm_receiver.rtlsdr_source.open_rtlsdr_device` and raises what it raises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from fm_receiver.rtlsdr_source import missing_dongle
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
        self.unplugged = threading.Event()
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
        if self.unplugged.is_set():
            raise OSError("fake dongle: LIBUSB_ERROR_NO_DEVICE (unplugged)")
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
    HardwareError, then devices are handed out again.  While not ``present`` (see :meth:`unplug`)
    every open fails as a real one does without a dongle; after :meth:`hang_opens`, an open blocks
    until :meth:`release_opens` (a dongle whose USB transfers never complete).
    """

    def __init__(
        self,
        stations: Mapping[float, float] | None = None,
        *,
        stalls: Sequence[int | None] = (),
        fail_opens: int = 0,
        noise_dbfs: float = -45.0,
        realtime: bool = True,
        present: bool = True,
        device_index: int = 0,
    ) -> None:
        self.stations = dict(stations or {})
        self.stalls = list(stalls)
        self.fail_opens = fail_opens
        self.noise_dbfs = noise_dbfs
        self.realtime = realtime
        self.present = present
        self.device_index = device_index
        self._opens_released = threading.Event()
        self._opens_released.set()
        self.devices: list[FakeRtlSdr] = []
        self.failed_opens = 0

    def unplug(self) -> None:
        """Pull the dongle out: reads of the open device fail, and opens find no dongle."""
        self.present = False
        for device in self.devices:
            device.unplugged.set()

    def plug_in(self) -> None:
        self.present = True

    def hang_opens(self) -> None:
        self._opens_released.clear()

    def release_opens(self) -> None:
        self._opens_released.set()

    def __call__(self) -> FakeRtlSdr:
        self._opens_released.wait(timeout=60.0)  # a test that forgets to release still ends
        if not self.present:
            raise missing_dongle(self.device_index)
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
