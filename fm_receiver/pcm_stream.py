"""A live PCM stream (s16le mono) between the FM reader thread and the audio output.

Implements ``drivers.player.PcmStream``: the reader writes demodulated blocks, the player reads;
``b""`` means the end of the stream, which comes after the receiver ``finish()``-es it (carrier
lost; what was buffered is still delivered), when someone calls ``close()``, or when no audio came
for ``timeout_s`` (the source stalled).  The
buffer is bounded: if nobody reads, the oldest audio is dropped so that relayed audio never lags
the station by more than ``max_buffer_s``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import numpy.typing as npt

__all__ = ["PcmStream", "to_s16le"]


def to_s16le(audio: npt.NDArray[np.float32]) -> bytes:
    """Float audio (1.0 = full scale, clipped) to signed 16-bit little-endian bytes."""
    scaled = np.clip(audio * np.float32(32767.0), -32768.0, 32767.0)
    return np.rint(scaled).astype("<i2").tobytes()


class PcmStream:
    """Blocking reader side of the relayed audio: ``read(max_bytes, timeout)``."""

    channels = 1
    sample_width = 2

    def __init__(self, sample_rate: int, *, max_buffer_s: float = 2.0, timeout_s: float = 2.0) -> None:
        self.sample_rate = sample_rate
        self.timeout_s = timeout_s
        self._capacity = int(max_buffer_s * sample_rate) * self.sample_width
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._closed = False
        self._finishing = False
        self._ready = threading.Condition()
        self.dropped_bytes = 0

    @property
    def closed(self) -> bool:
        """True once the stream has ended: reads return b"" from now on."""
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        return self._size

    def write(self, pcm: bytes) -> None:
        """Append audio (from the reader thread); drops the oldest audio beyond the bound."""
        if not pcm:
            return
        with self._ready:
            if self._closed or self._finishing:
                return
            self._chunks.append(pcm)
            self._size += len(pcm)
            while self._size > self._capacity and len(self._chunks) > 1:
                dropped = self._chunks.popleft()
                self._size -= len(dropped)
                self.dropped_bytes += len(dropped)
            self._ready.notify_all()

    def finish(self) -> None:
        """No more audio will come: the reader gets what is buffered, then b""."""
        with self._ready:
            self._finishing = True
            self._ready.notify_all()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` (whole samples) as soon as some are ready; b"" at the end of the stream.

        Waiting longer than ``timeout`` (default ``timeout_s``) for audio ends the stream.
        """
        deadline = time.monotonic() + (self.timeout_s if timeout is None else timeout)
        with self._ready:
            while not self._chunks and not self._closed:
                remaining = deadline - time.monotonic()
                if self._finishing or remaining <= 0:
                    self._end()
                    break
                self._ready.wait(remaining)
            return self._take(max_bytes - max_bytes % self.sample_width)

    def _take(self, limit: int) -> bytes:
        parts: list[bytes] = []
        taken = 0
        while self._chunks and taken < limit:
            chunk = self._chunks.popleft()
            room = limit - taken
            if len(chunk) > room:
                self._chunks.appendleft(chunk[room:])
                chunk = chunk[:room]
            parts.append(chunk)
            taken += len(chunk)
        self._size -= taken
        return b"".join(parts)

    def close(self) -> None:
        """End the stream now, dropping buffered audio; safe from any thread and more than once."""
        with self._ready:
            self._end()

    def _end(self) -> None:
        self._closed = True
        self._chunks.clear()
        self._size = 0
        self._ready.notify_all()
