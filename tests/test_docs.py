"""The docs say what the code does: their output blocks are real, the keys they list are the keys
the config reader knows, and what they claim about the daemon's imports holds."""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from foundation.errors import ConfigError
from scheduler.fields import ITEM_KEYS
from tests.doc_examples import DOCS, REGENERATE, REPO, console_blocks, differences

EXAMPLE = REPO / "config.example.yaml"
BIN = Path(sys.executable).parent
_UNLIKELY_KEY = "qqqqqqqq"  # close to no key, so the problem lists every known key


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_doc_output_blocks_are_what_the_code_prints(doc: Path) -> None:
    assert console_blocks(doc.read_text(encoding="utf-8")), f"{doc} has no console block to check"
    diff = differences(doc)
    if diff:
        pytest.fail(
            f"{doc.name} does not show what the code prints; to rewrite it run\n  {REGENERATE}\n{diff}"
        )


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_block_that_shows_output_is_checked(doc: Path) -> None:
    """Output pasted into a block that is not a console block would not be checked: refuse it."""
    lines = doc.read_text(encoding="utf-8").split("\n")
    fences = [index for index, line in enumerate(lines) if line.startswith("```")]
    for start, end in zip(fences[::2], fences[1::2], strict=True):
        language = lines[start].removeprefix("```").split(" ")[0]
        assert language, f"{doc.name}:{start + 1}: a block without a language"
        body = lines[start + 1 : end]
        if language != "console":
            shown = [line for line in body if line.startswith(("$ ", "loa-agent:", "loa:"))]
            assert not shown, f"{doc.name}:{start + 1}: output in a {language} block: {shown}"


def test_config_example_passes_check_config(tmp_path: Path) -> None:
    def check(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "loa-agent"), "--config", str(EXAMPLE), "check-config", *options],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    only_config = check("--config-only")
    assert (only_config.returncode, only_config.stdout) == (0, f"{EXAMPLE}: valid\n"), only_config.stderr
    # As docs/CONFIG.md warns: the schedule file it names must exist for the full check.
    if not Path("/etc/loa/schedule.yaml").exists():
        full = check()
        assert full.returncode == 2
        assert full.stderr == f"loa-agent: {EXAMPLE}: schedule.file: /etc/loa/schedule.yaml does not exist\n"


# -- keys: the example, the reference tables and the reader agree ----------------------------------


def _mapping_paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every mapping in ``value``, as a key path (only the first item of each list)."""
    if isinstance(value, list):
        return _mapping_paths(value[0], (*path, 0)) if value else []
    if not isinstance(value, dict):
        return []
    found = [path]
    for key, child in value.items():
        found += _mapping_paths(child, (*path, key))
    return found


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path if isinstance(part, str))


def _known_keys(tmp_path: Path) -> set[str]:
    """The keys the config reader knows in every mapping of the example, as check-config lists them
    for an unknown key: gpio.amplifiers.name for the name of each amplifier."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    known = set()
    for path in _mapping_paths(data):
        probe = copy.deepcopy(data)
        mapping = probe
        for part in path:
            mapping = mapping[part]
        mapping[_UNLIKELY_KEY] = 1
        config = tmp_path / "agent.yaml"
        config.write_text(yaml.safe_dump(probe), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        [problem] = caught.value.problems
        listed = re.fullmatch(r".*: unknown key \(known keys: (.*)\)", str(problem))
        assert listed is not None, problem
        known |= {_dotted((*path, key)) for key in listed.group(1).split(", ")}
    return known


def _example_keys() -> set[str]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    keys = set()
    for path in _mapping_paths(data):
        mapping = data
        for part in path:
            mapping = mapping[part]
        keys |= {_dotted((*path, key)) for key in mapping}
    return keys


def _reference_keys(doc: Path) -> set[str]:
    """The section headings under "Sections and keys" (`fm.squelch`) and the first column of their
    key tables; a table after "Each entry of `amplifiers`" lists the keys of each amplifier."""
    keys = set()
    section = ""
    prefix = ""
    in_reference = False
    for line in doc.read_text(encoding="utf-8").split("\n"):
        if line.startswith("## "):
            in_reference = line == "## Sections and keys"
        elif in_reference and line.startswith("#"):
            section = prefix = re.findall(r"`([^`]+)`", line)[0]
            keys.add(section)
        elif in_reference and (entry := re.match(r"Each entry of `(\w+)`", line)):
            prefix = f"{section}.{entry.group(1)}"
        elif in_reference and line.startswith("| `"):
            keys.add(f"{prefix}.{line.split('`')[1]}")
    return keys


def test_the_example_has_every_key_the_reader_knows_and_no_other(tmp_path: Path) -> None:
    known = _known_keys(tmp_path)
    assert "gpio.amplifiers.active_high" in known and "fm.iq_file.loop" in known
    assert _example_keys() == known


def test_the_reference_lists_every_key_the_reader_knows_and_no_other(tmp_path: Path) -> None:
    assert _reference_keys(REPO / "docs" / "CONFIG.md") == _known_keys(tmp_path)


def test_the_schedule_reference_lists_every_item_key() -> None:
    text = (REPO / "docs" / "SCHEDULING.md").read_text(encoding="utf-8")
    table = text.split("| key | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    assert sorted(key for row in rows for key in re.findall(r"`(\w+)`", row)) == sorted(ITEM_KEYS)


# -- docs/ARCHITECTURE.md and docs/BENCHMARKS.md on what the daemon imports ---------------------------


def _loaded_libraries(tmp_path: Path, fm: str) -> set[str]:
    """The packages whose compiled modules a running ``loa-agent run`` has mapped, once it is ready."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        "device: {id: xa-quang-son-01}\n"
        "gpio: {pin_factory: mock, amplifiers: [{name: zone-1, pin: 17}]}\n"
        f"audio: {{backend: null}}\nclock: {{require_sync: false}}\nstorage: {{dir: state}}\n"
        f"control: {{socket: agent.sock}}\nfm: {fm}\n",
        encoding="utf-8",
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    agent = subprocess.Popen(
        [str(BIN / "loa-agent"), "--config", str(config), "run"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        while b"READY=1" not in notify.recv(4096):  # systemd's signal that every subsystem is up
            pass
        maps = Path(f"/proc/{agent.pid}/maps").read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=15)
        notify.close()
    return {name for name in ("numpy", "scipy") if f"/site-packages/{name}/" in maps}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_numpy_and_scipy_are_loaded_only_with_fm(tmp_path: Path) -> None:
    # docs/ARCHITECTURE.md and docs/BENCHMARKS.md (written by bench/run_all.py) say this: the store
    # imports sqlite-utils without numpy, which sqlite-utils would otherwise load.
    (tmp_path / "idle").mkdir()
    assert _loaded_libraries(tmp_path / "idle", "{backend: none}") == set()
    recording = "{path: fm.cu8, loop: false}"
    fm = f"{{backend: iq_file, frequency: 99.1MHz, iq_file: {recording}}}"
    (tmp_path / "fm").mkdir()
    (tmp_path / "fm" / "fm.cu8").write_bytes(bytes(2048))
    assert _loaded_libraries(tmp_path / "fm", fm) == {"numpy", "scipy"}
