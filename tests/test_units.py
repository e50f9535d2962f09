"""The systemd units: valid for systemd itself, sandboxed as the docs say, and agreeing with the
agent's configuration defaults on where it writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.config import ControlConfig, StorageConfig

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
MAX_EXPOSURE = 3.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=true", "--no-pager", str(unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


@pytest.mark.parametrize("name", ["loa-agent", "loa-central", "loa-firstboot"])
def test_systemd_verifies_the_unit_without_a_word(name: str, tmp_path: Path) -> None:
    """verify checks every directive and that the commands exist: /opt/loa is made to exist here,
    under a temporary prefix, and nothing else in the unit changes."""
    prefix = tmp_path / "opt-loa"
    for command in ("venv/bin/loa-agent", "venv/bin/loa-central", "flash.sh"):
        (prefix / command).parent.mkdir(parents=True, exist_ok=True)
        (prefix / command).write_text("#!/bin/sh\n")
        (prefix / command).chmod(0o755)
    text = (UNITS / f"{name}.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/loa/" in text
    unit = tmp_path / f"{name}.service"
    unit.write_text(text.replace("/opt/loa/", f"{prefix}/"), encoding="utf-8")
    result = analyze("verify", "--man=no", str(unit))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # an unknown key is only a warning: none is allowed


def test_verify_would_see_a_mistyped_directive(tmp_path: Path) -> None:
    """The test above can fail: systemd names a key it does not know."""
    unit = tmp_path / "typo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n", encoding="utf-8")
    result = analyze("verify", "--man=no", str(unit))
    assert "Unknown key 'ProtectSystm'" in result.stderr


@pytest.mark.parametrize("name", ["loa-agent", "loa-central"])
def test_exposure_is_at_most_three_and_is_the_figure_the_docs_state(name: str) -> None:
    unit = UNITS / f"{name}.service"
    measured = exposure(unit)
    assert measured <= MAX_EXPOSURE
    assert f"rates it {measured:.1f} " in unit.read_text(encoding="utf-8")
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    assert f"`{name}.service` | {measured:.1f} " in operations


def test_the_unsandboxed_unit_would_fail_the_bound(tmp_path: Path) -> None:
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    assert exposure(bare) > MAX_EXPOSURE


def test_the_agent_unit_gives_the_sandbox_what_the_config_defaults_name() -> None:
    unit = directives(UNITS / "loa-agent.service")
    # StateDirectory=loa is /var/lib/loa, RuntimeDirectory=loa is /run/loa: the only writable places
    assert StorageConfig().dir == Path("/var/lib/loa") and unit["StateDirectory"] == ["loa"]
    assert ControlConfig().socket.parent == Path("/run/loa") and unit["RuntimeDirectory"] == ["loa"]
    assert unit["ProtectSystem"] == ["strict"] and "ReadWritePaths" not in unit
    assert unit["WorkingDirectory"] == ["/run/loa"]  # lgpio writes its FIFOs in the working directory
    # the crew's group owns the socket (0660) and can read the store; nobody else
    assert unit["Group"] == ["loa"] and unit["UMask"] == ["0027"]
    assert unit["StateDirectoryMode"] == ["0750"] and unit["RuntimeDirectoryMode"] == ["0750"]
    assert unit["SupplementaryGroups"] == ["gpio audio dialout plugdev"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    allowed = {value.split()[0] for value in unit["DeviceAllow"]}
    assert allowed == {
        "char-gpiochip",
        "char-alsa",
        "char-ttyUSB",
        "char-ttyACM",
        "char-ttyAMA",
        "char-usb_device",
    }
    assert unit["DevicePolicy"] == ["closed"]
    # clock trust reads adjtimex: the filter must let it through
    assert "adjtimex" in unit["SystemCallFilter"][0].split()
    assert "ProtectClock" not in unit
    assert "WatchdogSec" in unit and unit["Type"] == ["notify"]


def test_the_central_unit_runs_its_own_user_with_its_own_state() -> None:
    unit = directives(UNITS / "loa-central.service")
    assert unit["User"] == ["loa-central"] and unit["StateDirectory"] == ["loa-central"]
    assert unit["ExecStart"] == ["/opt/loa/venv/bin/loa-central --config /etc/loa/central.yaml serve"]
    assert unit["KillMode"] == ["control-group"]  # the broker it starts stops with it
