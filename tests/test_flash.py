"""flash.sh: it parses, shellcheck finds nothing, and its helpers work in a fake root."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLASH = ROOT / "flash.sh"


def call(function: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of flash.sh's functions alone: its definitions are sourced, not the install."""
    script = 'set -euo pipefail; source <(sed -n "/^[a-z_]*() {/,/^}/p" "$0"); "$@"'
    return subprocess.run(
        ["bash", "-c", script, str(FLASH), function, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_flash_sh_parses() -> None:
    result = subprocess.run(["bash", "-n", str(FLASH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing() -> None:
    result = subprocess.run(["shellcheck", str(FLASH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_every_command_the_readme_runs_with_sudo_is_linked(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = set(re.findall(r"\bsudo (loa[\w-]*) ", readme))
    assert commands >= {"loa", "loa-agent"}, commands
    prefix, bin_dir = tmp_path / "opt" / "loa", tmp_path / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True)
    result = call("link_commands", str(prefix), str(bin_dir))
    assert result.returncode == 0, result.stderr
    for command in commands:
        assert (bin_dir / command).readlink() == prefix / "venv" / "bin" / command
    # and the install itself links into root's PATH with that helper
    assert re.search(r'^link_commands "\$PREFIX" /usr/local/bin$', FLASH.read_text(), re.MULTILINE)


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian system")
@pytest.mark.parametrize(
    ("package", "installable"),
    [
        ("bash", True),
        ("loa-no-such-package", False),  # as python3-lgpio on Debian 12: apt prints nothing
        ("mail-transport-agent", False),  # purely virtual: apt says "Candidate: (none)"
    ],
)
def test_apt_candidate_is_empty_unless_apt_can_install_the_package(package: str, installable: bool) -> None:
    result = call("apt_candidate", package)
    assert result.returncode == 0, result.stderr
    assert bool(result.stdout.strip()) is installable, result.stdout
