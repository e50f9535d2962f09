"""The installed console scripts, run as a technician runs them: loa-agent check-config, loa status,
loa playlog, loa fm demod."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.fm_synth import Station, make_iq, to_bytes, tone

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_config_valid_and_invalid(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    ok = run("loa-agent", "--config", str(config), "check-config")
    assert ok.returncode == 0, ok.stderr
    config.write_text(
        config.read_text().replace("preroll: 1s", "preroll: 1").replace("postroll:", "postrol:")
    )
    bad = run("loa-agent", "--config", str(config), "check-config")
    assert bad.returncode == 2
    assert "agent.yaml:8: gpio.preroll: '1'" in bad.stderr
    assert "gpio.postrol: unknown key (did you mean 'postroll'?)" in bad.stderr
    refused = run("loa-agent", "--config", str(config), "run")
    assert refused.returncode == 2 and refused.stderr == bad.stderr


def test_check_config_reports_schedule_file_problems(tmp_path: Path) -> None:
    (tmp_path / "schedule.yaml").write_text(
        "items:\n  - {id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}\n"
        "  - {id: b, audio: b.wav, rrule: 'FREQ=DAILY', priorty: high}\n"
    )
    result = run("loa-agent", "--config", str(write_config(tmp_path)), "check-config")
    assert result.returncode == 2
    assert "schedule.yaml:3" in result.stderr
    assert "did you mean 'priority'?" in result.stderr


def test_status_and_playlog_while_running_and_after(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(1.0)}'}}",
        f"{{id: later, audio: tone-440Hz-0.5s.wav, at: '{at(3600)}'}}",
    )
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=6)
        live = run("loa", "--config", str(config), "status", "--json")
        text = run("loa", "--config", str(config), "status", "--lang", "en")
    status = json.loads(live.stdout)
    assert live.returncode == 0 and status["running"] is True
    assert status["clock"]["trusted"] is True
    assert status["next"][0]["item"] == "later"
    assert "clock    trusted" in text.stdout and "later [normal]" in text.stdout
    stopped = run("loa", "--config", str(config), "status", "--lang", "en")
    assert stopped.returncode == 1
    assert "NOT RUNNING" in stopped.stdout and "later [normal]" in stopped.stdout
    log = run("loa", "--config", str(config), "playlog", "--since", "1h", "--json")
    rows = json.loads(log.stdout)
    assert [(r["item_id"], r["outcome"]) for r in rows] == [("news", "completed")]
    assert (
        json.loads(run("loa", "--config", str(config), "playlog", "--since", "2099-01-01", "--json").stdout)
        == []
    )


def test_fm_demod_through_loa(tmp_path: Path) -> None:
    rate = 240_000
    iq = make_iq([Station(20_000, tone(1000.0, rate, 1.0), level_dbfs=-10.0)], rate, rate, noise_dbfs=-40.0)
    recording = tmp_path / "pole.cu8"
    recording.write_bytes(to_bytes(iq, "cu8"))
    out = tmp_path / "pole.wav"
    result = run(
        "loa",
        "fm",
        "demod",
        "--input",
        str(recording),
        "--format",
        "cu8",
        "--sample-rate",
        str(rate),
        "--offset",
        "20000",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["carrier"] is True and summary["snr_db"] > 20
    assert abs(summary["duration_s"] - 1.0) < 0.05
    assert out.stat().st_size > 40_000


def test_a_bad_schedule_file_does_not_stop_the_agent(tmp_path: Path) -> None:
    (tmp_path / "schedule.yaml").write_text("items:\n  - {id: a, audoi: a.wav}\n")
    config = write_config(tmp_path)
    assert run("loa-agent", "--config", str(config), "check-config").returncode == 2
    assert run("loa-agent", "--config", str(config), "check-config", "--config-only").returncode == 0
    agent = subprocess.Popen([str(BIN / "loa-agent"), "--config", str(config), "run"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        status: dict[str, object] = {}
        while time.monotonic() < deadline and not status.get("running"):
            time.sleep(0.2)
            reply = run("loa", "--config", str(config), "status", "--json")
            status = json.loads(reply.stdout) if reply.stdout.startswith("{") else {}
        assert status.get("running") is True, status
        schedule = status["schedule"]
        assert isinstance(schedule, dict) and "schedule.yaml:2" in str(schedule["error"])
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
