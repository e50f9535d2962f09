"""IQ recordings as a source: cu8 (as ``rtl_sdr`` writes), cs16 little-endian, cf32.

For diagnostics, the tests and the demo.  Paced in real time (a block is released when its last
sample would have arrived from a dongle) or as fast as the reader asks; optionally looping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from fm_receiver.dsp import IQ_FORMATS, FmParameterError, iq_from_bytes
from fm_receiver.iq_source import SourceFinished
from fm_receiver.source_health import CLOSED, OK, OPENING, SourceFault, SourceHealth, health_of
from foundation.errors import HardwareError

__all__ = ["IqFileSource"]

logger = logging.getLogger(__name__)


class IqFileSource:
    """Reads an IQ file in blocks of ``block_samples`` (default: 1/10 s)."""

    def __init__(
        self,
        path: str | Path,
        fmt: str,
        sample_rate: int,
        offset_hz: float,
        *,
        loop: bool = False,
        realtime: bool = False,
        block_samples: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fmt not in IQ_FORMATS:
            raise FmParameterError(f"IQ file {path}: format {fmt!r} is not one of {', '.join(IQ_FORMATS)}")
        self.path = Path(path)
        self.fmt = fmt
        self._sample_rate = int(sample_rate)
        self._offset_hz = float(offset_hz)
        self.loop = loop
        self.realtime = realtime
        self.block_samples = block_samples or max(1, self._sample_rate // 10)
        self._clock, self._sleep = clock, sleep
        self._file: BinaryIO | None = None
        self._health = OPENING
        self._delivered = 0
        self._started = 0.0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def offset_hz(self) -> float:
        return self._offset_hz

    @property
    def health(self) -> SourceHealth:
        return self._health

    def open(self) -> None:
        try:
            self._file = self.path.open("rb")
        except OSError as exc:
            fault = (
                SourceFault(f"IQ file {self.path} not found", "missing")
                if isinstance(exc, FileNotFoundError)
                else SourceFault(f"IQ file {self.path}: cannot open: {exc.strerror or exc}")
            )
            self._health = health_of(fault)
            raise fault from exc
        self._health = OK
        self._delivered = 0
        self._started = self._clock()
        logger.info("IQ file %s opened (%s, %d S/s)", self.path, self.fmt, self._sample_rate)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._health.state != "finished":
            self._health = CLOSED

    def read(self, timeout: float) -> npt.NDArray[np.complex64] | None:
        if self._file is None:
            if self._health.state == "finished":
                raise SourceFinished(f"IQ file {self.path}: end of file")
            raise HardwareError(f"IQ file {self.path}: read before open")
        if self.realtime and not self._wait_for_block(timeout):
            return None
        data = self._read_block(self._file)
        self._delivered += len(data) // IQ_FORMATS[self.fmt]
        return iq_from_bytes(data, self.fmt)

    def _wait_for_block(self, timeout: float) -> bool:
        due = self._started + (self._delivered + self.block_samples) / self._sample_rate
        wait = due - self._clock()
        if wait > timeout:
            self._sleep(max(timeout, 0.0))
            return False
        if wait > 0:
            self._sleep(wait)
        return True

    def _read_block(self, file: BinaryIO) -> bytes:
        size = IQ_FORMATS[self.fmt]
        wanted = self.block_samples * size
        data = file.read(wanted)
        if len(data) < wanted and self.loop:
            file.seek(0)
            data += file.read(wanted - len(data))
            if not data:
                raise HardwareError(f"IQ file {self.path}: empty file cannot loop")
        data = data[: len(data) - len(data) % size]
        if not data:
            self._health = SourceHealth("finished")
            self.close()
            raise SourceFinished(f"IQ file {self.path}: end of file")
        return data
