"""Small WAV helpers: read, write and measure 16-bit PCM files, and stream a WAV header.

The null player uses :func:`wav_duration` to know how long a file "plays"; the libVLC player
uses :class:`WavStreamFeed` to hand a live PCM stream to libVLC as an endless WAV; tests use the
rest to check what libVLC wrote.
"""

from __future__ import annotations

import struct
import threading
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drivers.player import PcmStream

Samples = npt.NDArray[np.float64]

SAMPLE_BYTES = 2  # signed 16-bit little-endian everywhere in Loa
UNKNOWN_SIZE = 0xFFFFFFFF  # the usual RIFF size for a stream whose length is not known


def wav_duration(path: Path) -> float:
    """Seconds of audio in a PCM WAV file; raises wave.Error or OSError if it is not one."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        if rate <= 0:
            raise wave.Error(f"{path} has a sample rate of {rate}")
        return wav.getnframes() / rate


def read_wav(path: Path) -> tuple[Samples, int]:
    """Samples scaled to -1..1, shape (frames, channels), and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != SAMPLE_BYTES:
            raise wave.Error(f"{path} has {8 * wav.getsampwidth()}-bit samples, expected 16-bit")
        raw = wav.readframes(wav.getnframes())
        channels, rate = wav.getnchannels(), wav.getframerate()
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    return pcm.reshape(-1, channels), rate


def write_wav(path: Path, samples: Samples, rate: int) -> None:
    """Write samples in -1..1 (shape (frames,) or (frames, channels)) as 16-bit PCM."""
    frames = samples.reshape(len(samples), -1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(frames.shape[1])
        wav.setsampwidth(SAMPLE_BYTES)
        wav.setframerate(rate)
        wav.writeframes(to_pcm(frames))


def to_pcm(samples: Samples) -> bytes:
    """Samples in -1..1 as interleaved s16le bytes (clipped)."""
    scaled = np.clip(np.round(samples * 32767.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> Samples:
    """A sine tone, shape (frames,)."""
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def dominant_frequency(samples: Samples, rate: int) -> float:
    """Frequency of the strongest FFT bin of the first channel, refined by parabolic interpolation."""
    mono = samples.reshape(len(samples), -1)[:, 0]
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    peak = int(np.argmax(spectrum[1:-1])) + 1
    left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
    offset = 0.5 * (left - right) / (left - 2 * centre + right)
    return float((peak + offset) * rate / len(mono))


def rms(samples: Samples) -> float:
    """Root mean square of all samples."""
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0


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

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the WAV; b"" at the end or after ``close``."""
        if self._closed.is_set():
            return b""
        if self._pending:
            chunk, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        else:
            chunk = self._stream.read(max_bytes)
            if not chunk:
                self.close()
        self.bytes_served += len(chunk)
        return chunk

    def close(self) -> None:
        """End the feed and the stream behind it."""
        self._closed.set()
        self._stream.close()
