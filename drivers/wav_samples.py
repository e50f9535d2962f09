"""Read, write and measure 16-bit PCM WAV samples with numpy (tests, benchmarks, the demo)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drivers.wav import SAMPLE_BYTES

Samples = npt.NDArray[np.float64]


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
