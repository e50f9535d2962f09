"""The squelch defaults stated in docs/CONFIG.md, docs/FM.md and config.example.yaml are the code's.

The docs once said 12/8 dB, -70 dBFS and a 1 s hold while the agent used 15/10 dB, -50 dBFS and 2 s;
these tests read the numbers the docs state and compare them with what the agent builds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import SquelchConfig, load_config_text
from agent.fm_relay import FmRelay
from agent.store import Store
from drivers.player import make_player
from fm_receiver.quality import CarrierDetector
from foundation.units import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DETECTOR_SETTINGS = ("open_snr_db", "close_snr_db", "min_level", "open_hold_s", "close_hold_s")


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(r"^#+ ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def _table(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]  # no header, rule


def _number(cell: str) -> float:
    match = re.match(r"`?([-−]?\d+(?:\.\d+)?)", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(1).replace("−", "-"))


def _settings(detector: CarrierDetector) -> dict[str, float]:
    return {name: getattr(detector, name) for name in DETECTOR_SETTINGS}


def _squelch_value(key: str, text: str) -> object:
    return parse_duration(text) if key == "hold" else float(text)


@pytest.fixture
def agent_detectors(tmp_path: Path) -> Iterator[dict[str, CarrierDetector]]:
    """The detectors the agent builds from a config that leaves ``fm.squelch`` out."""
    store = Store.open(tmp_path)
    player = make_player("null", [], lambda event: None)
    base = "device: {id: xa-1}\ngpio:\n  amplifiers: [{name: zone-1, pin: 17}]\nfm:\n  frequency: 99.1MHz\n"
    backends = {
        "sdr": "  backend: iq_file\n  iq_file: {path: never-opened.cu8}\n",
        "serial": "  backend: serial\n",
    }
    detectors = {}
    for name, section in backends.items():
        config = load_config_text(base + section, tmp_path / "agent.yaml")
        assert config.fm.squelch == SquelchConfig()
        detectors[name] = FmRelay(config, lambda event: None, player=player, store=store).receiver.detector
    yield detectors
    store.close()


def test_config_md_states_the_squelch_defaults() -> None:
    section = _section((ROOT / "docs/CONFIG.md").read_text(encoding="utf-8"), "#### `fm.squelch`")
    stated = {
        row[0].strip("`"): _squelch_value(row[0].strip("`"), row[2].strip("`")) for row in _table(section)
    }
    assert stated == dataclasses.asdict(SquelchConfig())


def test_config_md_states_the_close_hold_and_the_tuner_floor(
    agent_detectors: dict[str, CarrierDetector],
) -> None:
    section = _section((ROOT / "docs/CONFIG.md").read_text(encoding="utf-8"), "#### `fm.squelch`")
    cap = re.search(r"shorter of `hold` and `([^`]+)`", section)
    floor = re.search(r"at least `([^`]+)` dBµV", section)
    assert cap and floor, "CONFIG.md no longer states the close hold or the tuner's floor"
    hold = SquelchConfig().hold
    assert agent_detectors["sdr"].open_hold_s == hold.total_seconds()
    assert agent_detectors["sdr"].close_hold_s == min(hold, parse_duration(cap.group(1))).total_seconds()
    assert agent_detectors["serial"].min_level == float(floor.group(1))


def test_the_example_config_states_the_squelch_defaults() -> None:
    lines = (ROOT / "config.example.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  squelch:")
    stated = {}
    for index in range(start + 1, len(lines)):
        key = re.match(r"    (\w+): ", lines[index])
        if not lines[index].startswith("    "):
            break
        if key:
            default = re.search(r"Default: (\S+)$", lines[index - 1])
            assert default, f"no 'Default:' above {lines[index]!r}"
            stated[key.group(1)] = _squelch_value(key.group(1), default.group(1))
    assert stated == dataclasses.asdict(SquelchConfig())


def test_fm_md_table_is_what_the_code_builds(agent_detectors: dict[str, CarrierDetector]) -> None:
    section = _section((ROOT / "docs/FM.md").read_text(encoding="utf-8"), "### Squelch defaults")
    rows = _table(section)
    assert len(rows) == len(DETECTOR_SETTINGS)
    columns = {"sdr": 1, "serial": 2, "bare": 3}
    detectors = {**agent_detectors, "bare": CarrierDetector()}
    for name, column in columns.items():
        stated = {setting: _number(row[column]) for setting, row in zip(DETECTOR_SETTINGS, rows, strict=True)}
        assert stated == _settings(detectors[name]), name
