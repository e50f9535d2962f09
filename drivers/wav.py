"""WAV framing with the standard library only (the daemon must not load numpy for it).

The null player uses :func:`wav_duration` to know how long a file "plays"; the libVLC player
uses :class:`WavStreamFeed` to hand a live PCM stream to libVLC as an endless WAV.  Sample-level
reading, writing and measuring live in :mod:`drivers.wav_samples`.
"""

from __future__ import annotations

import struct
import threading
import time
import wave
from pathlib import Path

from drivers.player import PcmStream

SAMPLE_BYTES = 2  # signed 16-bit little-endian everywhere in Loa
UNKNOWN_SIZE = 0xFFFFFFFF  # the usual RIFF size for a stream whose length is not known


def wav_duration(path: Path) -> float:
    """Seconds of audio in a PCM WAV file; raises wave.Error or OSError if it is not one."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        if rate <= 0:
            raise wave.Error(f"{path} has a sample rate of {rate}")
        return wav.getnframes() / rate


def wav_header(rate: int, channels: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """A 44-byte PCM s16le WAV header; the default size marks a stream of unknown length."""
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    block = channels * SAMPLE_BYTES
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data_bytes)


class WavStreamFeed:
    """Serves a :class:`PcmStream` as one endless WAV file: header first, then its PCM.

    ``read`` is called on the consumer's thread (libVLC's input thread); ``close`` from any other
    thread makes it return b"" so the consumer sees the end of the stream instead of blocking.
    """

    def __init__(self, stream: PcmStream) -> None:
        self._stream = stream
        self._pending = wav_header(stream.sample_rate, stream.channels)
        self._closed = threading.Event()
        self.bytes_served = 0
        self.reading_since: float | None = None  # monotonic start of a source read under way

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the WAV; b"" at the end or after ``close``."""
        if self._closed.is_set():
            return b""
        if self._pending:
            chunk, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        else:
            self.reading_since = time.monotonic()
            try:
                chunk = self._stream.read(max_bytes)
            finally:
                self.reading_since = None
            if not chunk:
                self.close()
        self.bytes_served += len(chunk)
        return chunk

    def close(self) -> None:
        """End the feed and the stream behind it."""
        self._closed.set()
        self._stream.close()
