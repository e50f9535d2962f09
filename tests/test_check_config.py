"""``loa-agent --config FILE check-config`` as a technician runs it, on the mistakes found by trying
the box: numbers in quotes, a missing space after ':', a file saved in another encoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

CONFIG = """\
device:
  id: xa-quang-son-01
gpio:
  pin_factory: mock
  amplifiers:
    - {name: zone-1, pin: 17}
"""


def check_config(path: Path) -> tuple[int, list[str]]:
    """Exit code and stderr lines of check-config, run from the file's directory."""
    result = subprocess.run(
        [str(BIN / "loa-agent"), "--config", path.name, "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=path.parent,
    )
    assert result.stdout == ("agent.yaml: valid\n" if result.returncode == 0 else ""), result.stdout
    return result.returncode, result.stderr.splitlines()


@pytest.mark.parametrize(
    ("text", "stderr"),
    [
        (
            CONFIG.replace("pin: 17", 'pin: "17"'),
            [
                """loa-agent: agent.yaml:6: gpio.amplifiers[0].pin: '"17"' is text, not a number: """
                "expected a BCM GPIO pin number from 0 to 27 (remove the quotes: 17)"
            ],
        ),
        (
            CONFIG + 'audio: {volume: "80"}\nclock:\n  require_sync: "true"\n',
            [
                "loa-agent: 2 problems:",
                """loa-agent: agent.yaml:7: audio.volume: '"80"' is text, not a number: """
                "expected a volume from 0 to 100 (percent) (remove the quotes: 80)",
                """loa-agent: agent.yaml:9: clock.require_sync: '"true"' is text, not true or false: """
                "expected true or false (remove the quotes: true)",
            ],
        ),
        (
            CONFIG.replace("  id: xa-quang-son-01", "  id:xa-01"),
            ["loa-agent: agent.yaml:2: device.id: missing space after ':' (write 'id: xa-01')"],
        ),
        (
            "storage:/var/lib/loa\n",
            ["loa-agent: agent.yaml:1: storage: missing space after ':' (write 'storage: /var/lib/loa')"],
        ),
        (
            CONFIG + "storage:/var/lib/loa\n",
            [
                "loa-agent: agent.yaml:7:1: YAML syntax error: missing space after ':' "
                "(write 'storage: /var/lib/loa')"
            ],
        ),
    ],
)
def test_check_config_says_what_to_write(tmp_path: Path, text: str, stderr: list[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    assert check_config(path) == (2, stderr)
    path.write_text(CONFIG, encoding="utf-8")
    assert check_config(path) == (0, [])


def test_check_config_names_the_first_byte_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    # Typed in an editor set to Windows-1258 (à is 0xE0 there) after a line saved as UTF-8.
    path.write_bytes(CONFIG.encode() + "# Xã Quảng Sơn\n".encode() + "# Hà\n".encode("cp1258"))
    code, stderr = check_config(path)
    assert (code, stderr) == (
        2,
        ["loa-agent: agent.yaml:8:4: the file is not UTF-8 text (it has byte 0xE0 here); save it as UTF-8"],
    )


def test_check_config_reads_a_schedule_file_in_another_encoding_as_a_problem(tmp_path: Path) -> None:
    schedule = tmp_path / "lich-phat.yaml"
    schedule.write_bytes("items:\n  - id: Sơn\n".encode("cp1258"))
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG + "schedule: {file: lich-phat.yaml}\n", encoding="utf-8")
    code, stderr = check_config(path)
    assert code == 2
    assert stderr == [
        f"loa-agent: {schedule}:2:10: the file is not UTF-8 text (it has byte 0xF5 here); save it as UTF-8"
    ]
