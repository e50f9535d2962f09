"""FmReceiver end to end on IQ files: audio only while the carrier is present, events, supervision."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from fm_receiver.dsp import FmDemodulator
from fm_receiver.iq_file import IqFileSource
from fm_receiver.iq_source import FmEvent
from fm_receiver.pcm_stream import PcmStream
from fm_receiver.quality import CarrierDetector
from fm_receiver.receiver import FmReceiver
from foundation.errors import HardwareError
from tests.fm_synth import Station, make_iq, sine_fit, to_bytes, tone

RATE = 240_000
OFFSET = 15_000.0


def _recording(tmp_path: Path, carrier_s: float, noise_s: float) -> Path:
    """``carrier_s`` of a 1 kHz station, then the transmitter goes off: noise only."""
    n_carrier, n_noise = int(RATE * carrier_s), int(RATE * noise_s)
    station = Station(OFFSET, tone(1_000, RATE, carrier_s, 0.5), level_dbfs=-10)
    with_carrier = (
        make_iq([station], RATE, n_carrier, noise_dbfs=-35) if n_carrier else np.zeros(0, np.complex64)
    )
    noise = make_iq([], RATE, n_noise, noise_dbfs=-35, seed=9)
    path = tmp_path / "rec.cu8"
    path.write_bytes(to_bytes(np.concatenate([with_carrier, noise]).astype(np.complex64), "cu8"))
    return path


def _run(source: IqFileSource | FlakySource) -> tuple[list[FmEvent], np.ndarray, FmReceiver]:
    events: list[FmEvent] = []
    receiver = FmReceiver(
        source,
        FmDemodulator(RATE, OFFSET),
        CarrierDetector(open_hold_s=1.0, close_hold_s=0.5),
        events.append,
        frequency_hz=99.1e6,
        max_buffer_s=30.0,
        backoff_initial_s=0.01,
    )
    chunks: list[bytes] = []
    stream = receiver.open_stream(timeout_s=30.0)  # the agent asks for it when it decides to relay
    reader = threading.Thread(target=_drain, args=(stream, chunks))
    reader.start()
    receiver.start()
    assert receiver.finished.wait(20.0)
    status = receiver.status()
    receiver.stop()
    reader.join(5.0)
    assert status["source"] == "finished"
    return events, np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64) / 32767, receiver


def _drain(stream: PcmStream, chunks: list[bytes]) -> None:
    while chunk := stream.read(8192):
        chunks.append(chunk)


def test_relays_the_station_and_nothing_once_it_goes_off_air(tmp_path: Path) -> None:
    source = IqFileSource(_recording(tmp_path, 3.0, 2.0), "cu8", RATE, OFFSET, block_samples=RATE // 10)
    events, audio, _ = _run(source)
    kinds = [e.kind for e in events]
    assert kinds == ["fm.carrier_present", "fm.carrier_lost", "fm.source_finished"]
    assert events[0].detail["snr_db"] > 20 and events[0].detail["frequency_hz"] == 99.1e6
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)
    relayed = audio[voiced[0] : voiced[-1] + 1]
    assert 1.7 < len(relayed) / 48_000 < 2.1  # from the 1 s open hold until the transmitter stops
    _, snr = sine_fit(relayed[2_400:], 1_000, 48_000)
    assert snr > 30  # no noise burst got through
    assert np.all(audio[voiced[-1] + 1 :] == 0)  # muted at once while the close hold runs


def test_noise_only_relays_nothing(tmp_path: Path) -> None:
    source = IqFileSource(_recording(tmp_path, 0.0, 3.0), "cu8", RATE, OFFSET)
    events, audio, receiver = _run(source)
    assert [e.kind for e in events] == ["fm.source_finished"]
    assert len(audio) == 0
    assert receiver.status()["carrier"] is False


class FlakySource(IqFileSource):
    """An IQ file whose first opening fails on the second read, as a dongle pulled out would."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.opens = 0

    def open(self) -> None:
        super().open()
        self.opens += 1
        self.reads = 0

    def read(self, timeout: float) -> np.ndarray | None:
        self.reads += 1
        if self.opens == 1 and self.reads == 2:
            raise HardwareError("flaky source: unplugged")
        return super().read(timeout)


def test_a_failing_source_is_restarted(tmp_path: Path) -> None:
    source = FlakySource(_recording(tmp_path, 2.0, 0.0), "cu8", RATE, OFFSET)
    events, audio, _ = _run(source)
    kinds = [e.kind for e in events]
    assert kinds == ["fm.source_error", "fm.carrier_present", "fm.carrier_lost", "fm.source_finished"]
    assert "unplugged" in events[0].detail["error"]
    assert events[2].detail["reason"] == "source finished"
    assert source.opens == 2
    assert len(audio) > 0.8 * 48_000


def test_pcm_stream_bounds_its_buffer_and_keeps_whole_samples() -> None:
    stream = PcmStream(48_000, max_buffer_s=0.01)  # 480 samples
    for _ in range(4):
        stream.write(b"\x01\x00" * 200)
    assert stream.buffered_bytes == 800 and stream.dropped_bytes == 800
    assert stream.read(301) == b"\x01\x00" * 150  # whole samples only
    assert not stream.closed


def test_pcm_stream_ends_when_finished_after_delivering_its_buffer() -> None:
    stream = PcmStream(48_000)
    stream.write(b"\x02\x00" * 10)
    stream.finish()
    stream.write(b"\x03\x00")  # too late: ignored
    assert stream.read(100) == b"\x02\x00" * 10
    assert stream.read(100) == b""
    assert stream.closed


def test_pcm_stream_ends_on_timeout_and_on_close() -> None:
    stream = PcmStream(48_000, timeout_s=0.05)
    assert stream.read(100) == b"" and stream.closed  # the source stalled: the stream is over
    stream = PcmStream(48_000, timeout_s=30.0)
    waiter = threading.Thread(target=stream.read, args=(10,))
    waiter.start()
    stream.close()
    waiter.join(1.0)
    assert not waiter.is_alive()
    stream.write(b"\x00\x00")
    assert stream.read(10) == b""


def test_open_stream_ends_the_previous_one(tmp_path: Path) -> None:
    source = IqFileSource(_recording(tmp_path, 0.5, 0.0), "cu8", RATE, OFFSET)
    receiver = FmReceiver(source, FmDemodulator(RATE, OFFSET), CarrierDetector(), lambda event: None)
    first = receiver.open_stream()
    second = receiver.open_stream()
    assert first.read(10) == b"" and first.closed and not second.closed
    receiver.stop()
    assert second.read(10) == b""
    assert receiver.status()["streaming"] is False


@pytest.mark.parametrize("value", [2.0, -2.0])
def test_pcm_conversion_clips(value: float) -> None:
    from fm_receiver.pcm_stream import to_s16le

    assert np.frombuffer(to_s16le(np.array([value], np.float32)), "<i2")[0] == (
        32767 if value > 0 else -32768
    )
