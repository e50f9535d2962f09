"""The IQ-file source: formats, looping, end of file, real-time pacing on an injected clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fm_receiver.dsp import FmParameterError
from fm_receiver.iq_file import IqFileSource
from fm_receiver.iq_source import SourceFinished
from fm_receiver.source_health import SourceFault, SourceHealth
from foundation.errors import HardwareError
from tests.fm_synth import to_bytes


def _write(tmp_path: Path, iq: np.ndarray, fmt: str) -> Path:
    path = tmp_path / f"rec.{fmt}"
    path.write_bytes(to_bytes(iq, fmt))
    return path


def _ramp(n: int) -> np.ndarray:
    return ((np.arange(n) % 200 - 100) / 128 + 0.5j).astype(np.complex64)


@pytest.mark.parametrize("fmt", ["cu8", "cs16", "cf32"])
def test_reads_whole_file_in_blocks_then_finishes(tmp_path: Path, fmt: str) -> None:
    iq = _ramp(1_050)
    source = IqFileSource(_write(tmp_path, iq, fmt), fmt, 240_000, 0.0, block_samples=100)
    source.open()
    blocks = []
    with pytest.raises(SourceFinished):
        while True:
            block = source.read(timeout=0.1)
            assert block is not None
            blocks.append(block)
    assert [len(b) for b in blocks] == [100] * 10 + [50]
    np.testing.assert_allclose(np.concatenate(blocks), iq, atol=1 / 127)
    assert source.health.state == "finished"


def test_loops_back_to_the_start(tmp_path: Path) -> None:
    iq = _ramp(250)
    source = IqFileSource(_write(tmp_path, iq, "cf32"), "cf32", 240_000, 0.0, block_samples=100, loop=True)
    source.open()
    got = np.concatenate([source.read(0.1) for _ in range(6)])  # type: ignore[misc]
    np.testing.assert_array_equal(got, np.concatenate([iq, iq, iq[:100]]))
    source.close()
    assert source.health.state == "closed"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_realtime_pacing_releases_blocks_at_sample_time(tmp_path: Path) -> None:
    clock = FakeClock()
    path = _write(tmp_path, _ramp(10_000), "cu8")
    source = IqFileSource(
        path, "cu8", 1_000, 0.0, realtime=True, block_samples=500, clock=clock, sleep=clock.sleep
    )
    source.open()
    assert source.read(timeout=0.2) is None  # the first block is due 0.5 s after opening
    assert source.read(timeout=1.0) is not None
    assert clock.now == pytest.approx(100.5)
    assert source.read(timeout=1.0) is not None
    assert clock.now == pytest.approx(101.0)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FmParameterError, match="format 'wav'"):
        IqFileSource(tmp_path / "x", "wav", 240_000, 0.0)
    source = IqFileSource(tmp_path / "missing.cu8", "cu8", 240_000, 0.0)
    assert source.health == SourceHealth("opening")
    with pytest.raises(HardwareError, match=r"missing\.cu8") as caught:
        source.open()
    missing = SourceHealth("missing", f"IQ file {tmp_path / 'missing.cu8'} not found")
    assert isinstance(caught.value, SourceFault) and caught.value.state == "missing"
    assert source.health == missing
    source.close()
    assert source.health.state == "closed"
    unreadable = IqFileSource(tmp_path, "cu8", 240_000, 0.0)  # a directory
    with pytest.raises(SourceFault, match="cannot open: Is a directory"):
        unreadable.open()
    assert unreadable.health.state == "failed"
