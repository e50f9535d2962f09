"""``make demo`` as a user runs it (``python -m demo --quick``): real processes (``loa-central serve``
with its Mosquitto, three ``loa-agent run`` with libVLC writing WAV), a real broker, the REST API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import requests

from drivers.wav_samples import read_wav
from tests.audio_fixtures import libvlc_missing

ROOT = Path(__file__).resolve().parent.parent


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def demo_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "demo", "--quick", "--run-dir", str(run_dir), "--http-port", "0"]


def processes_of(run_dir: Path) -> list[str]:
    """The command lines of every process still running that names the run dir (mosquitto's config,
    the agents' and the server's --config are all under it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def needs_vlc() -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)


@pytest.mark.vlc
@pytest.mark.slow
@pytest.mark.usefixtures("needs_vlc")
def test_the_whole_stack_plays_the_bulletins_and_the_report_counts_them(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(demo_command(run_dir), cwd=ROOT, capture_output=True, text=True, timeout=240,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not processes_of(run_dir)

    # the admin's login, printed once, kept 0600
    [(user, password)] = re.findall(r"^login: (\S+) / (\S+) ", done.stdout, re.MULTILINE)
    stored = run_dir / "admin-password"
    assert (user, stored.read_text(encoding="utf-8")) == ("admin", password + "\n")
    assert stored.stat().st_mode & 0o777 == 0o600
    assert done.stdout.count(password) == 1

    # the play logs the central server holds, and its report, as the demo fetched them
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    plays = {(row["item_id"], row["device_id"]): row for row in summary["playlogs"]}
    chime, spoken = sorted({item for item, _ in plays})
    assert set(plays) == {(chime, "quang-son-01"), (chime, "quang-son-02"), (chime, "hai-lang-01"),
                          (spoken, "quang-son-01"), (spoken, "quang-son-02")}  # fmt: skip
    assert all(row["outcome"] == "completed" and row["origin"] == "central" for row in plays.values())
    for row in plays.values():  # each at its second
        late = instant(row["actual_start"]) - instant(row["scheduled_start"])
        assert abs(late.total_seconds()) < 0.5, row
    report = {unit["unit"]: unit for unit in summary["report"]["units"]}
    assert {unit: (row["boxes"], row["scheduled"], row["completed"]) for unit, row in report.items()} == {
        "xa-quang-son": (2, 4, 4),
        "xa-hai-lang": (1, 1, 1),
    }
    assert "GET /api/v1/devices on the central server" in done.stdout
    tree = "Tỉnh Quảng Trị (province tinh-quang-tri)\n  Xã Hải Lăng (commune xa-hai-lang): hai-lang-01\n"
    assert tree + "  Xã Quảng Sơn (commune xa-quang-son): quang-son-01, quang-son-02\n" in done.stdout

    # what libVLC wrote on the box that played the chime last: all three seconds of it
    samples, rate = read_wav(run_dir / "boxes" / "hai-lang-01" / "output.wav")
    assert abs(len(samples) / rate - 3.0) < 0.05 and float(abs(samples).max()) > 0.1
    assert "embedded broker stopped" in (run_dir / "central" / "serve.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_ctrl_c_stops_every_process_it_started_and_a_second_demo_leaves_them_be(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [*demo_command(run_dir), "--player", "null"]
    demo = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:  # until the server and the boxes are up and the login is shown
            lines.append(line)
            if line.startswith("web pages: "):
                url = line.split()[2]
                break
        assert requests.get(f"{url}api/v1/devices", timeout=5).status_code == 401  # it serves
        assert len(processes_of(run_dir)) >= 6  # the demo, the server, its mosquitto and three agents
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1  # and it wipes nothing under the running one
        assert f"a demo's processes still run in {run_dir}" in second.stderr
        assert (run_dir / "central" / "central.yaml").exists()
        demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        assert demo.wait(timeout=90) == 130, "".join(lines) + rest
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGKILL)
            demo.wait()
    assert not processes_of(run_dir)
    assert "every process it started has stopped" in rest
    assert "embedded broker stopped" in (run_dir / "central" / "serve.log").read_text(encoding="utf-8")
