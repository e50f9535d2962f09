"""A short fuzz run over the readers of config and schedule files, in ``make test``.

The mutations and the readers' contract are those of ``bench/fuzz_inputs.py`` (its long run is in
docs/BENCHMARKS.md): every mutated file is read, or refused with problems placed in the file, and
nothing else escapes.  Hypothesis picks the case numbers and keeps any that fail for the next run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import fuzz_inputs
from bench.fuzz_inputs import Seed, case, prepare, read_case, seeds
from foundation.errors import ConfigError, ScheduleError
from foundation.yaml_source import INTERNAL_FAILURE


@pytest.fixture(scope="module")
def sources() -> list[Seed]:
    return seeds()


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    prepare(folder)
    return folder


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_mutated_files_are_read_or_refused_in_place(sources: list[Seed], directory: Path, index: int) -> None:
    source, applied, data = case(0, index, sources)
    _, failure = read_case(source.kind, data, directory)
    show = f"python -m bench.fuzz_inputs --show {index}"
    assert failure is None, f"{source.name} mutated by {'+'.join(applied)} ({show}): {failure}"


def test_the_seeds_are_the_real_files(sources: list[Seed]) -> None:
    names = {seed.name for seed in sources}
    assert {"config.example.yaml", "agent.yaml", "every-key schedule"} <= names
    assert any(name.startswith("SCHEDULING.md") for name in names)
    good = {seed.kind for seed in sources if seed.good}
    assert good == {"config", "schedule"}, "mutations must also start from files that read"


def test_the_harness_reports_what_escapes_or_is_not_placed(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def escapes(path: Path) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(fuzz_inputs, "load_config", escapes)
    assert read_case("config", b"device: {}\n", directory) == (
        False,
        "RecursionError: maximum recursion depth exceeded",
    )

    def unplaced(path: Path) -> None:
        raise ConfigError(["device.id: missing"])

    monkeypatch.setattr(fuzz_inputs, "load_config", unplaced)
    _, failure = read_case("config", b"device: {}\n", directory)
    assert failure == "ConfigError not placed in the file: device.id: missing"

    def boundary(path: Path, *_: object) -> None:
        raise ScheduleError([f"{path}: could not be read (OverflowError: x); {INTERNAL_FAILURE}"])

    monkeypatch.setattr(fuzz_inputs, "read_schedule_file", boundary)
    _, failure = read_case("schedule", b"items: []\n", directory)
    assert failure is not None and INTERNAL_FAILURE in failure
