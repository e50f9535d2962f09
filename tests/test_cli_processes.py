"""``loa-agent`` and ``loa`` as real processes, the way a technician meets them at the pole: a second
agent started by mistake, a schedule naming a file that is not there, a box that crashed with its
amplifiers on, a box where the agent never ran, and output piped into ``head``."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.store import PlayRecord, Store
from agent.version import VERSION
from tests.agent_harness import at, write_config, write_schedule
from tests.audio_fixtures import tone_file

BIN = Path(sys.executable).parent
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")  # the device zone of write_config


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, check=False
    )


def status_json(config: Path) -> dict[str, Any]:
    reply = run("loa", "--config", str(config), "status", "--json")
    return json.loads(reply.stdout) if reply.stdout.startswith("{") else {}


def wait_until(what: Any, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"not within {timeout} s: {why}"
        time.sleep(0.1)


@contextmanager
def agent_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    """``loa-agent run`` as systemd would start it; stopped with SIGTERM unless the test killed it."""
    agent = subprocess.Popen(
        [str(BIN / "loa-agent"), "--config", str(config), "run"], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: status_json(config).get("running") is True, 15, "the agent answers")
        yield agent
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=15)


def test_a_second_agent_on_the_same_storage_dir_is_refused_and_the_first_runs_on(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    with agent_process(config) as first:
        second = subprocess.run(
            [str(BIN / "loa-agent"), "--config", str(config), "run"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert first.poll() is None, "the first agent still runs"
        assert status_json(config).get("running") is True, "and still answers"
    assert first.returncode == 0
    assert second.returncode == 7
    said = [line for line in second.stderr.splitlines() if line.startswith("loa-agent:")]
    assert said == [
        f"loa-agent: another loa-agent (pid {first.pid}) is already running with storage.dir "
        f"{tmp_path / 'state'}; stop it first (sudo systemctl stop loa-agent)"
    ]
    assert "Traceback" not in second.stderr


def test_check_config_refuses_a_schedule_whose_audio_file_is_missing(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(
        tmp_path,
        "{id: here, audio: tone-440Hz-0.5s.wav, at: '2026-12-01T06:30:00+07:00'}",
        "{id: gone, audio: gone.wav, at: '2026-12-01T06:30:00+07:00'}",
    )
    config = write_config(tmp_path)
    result = run("loa-agent", "--config", str(config), "check-config")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"loa-agent: {tmp_path / 'schedule.yaml'}:3: items[1].audio: 'gone.wav' file not found: "
        f"{tmp_path / 'gone.wav'}: expected an audio file the agent can read\n"
    )
    assert run("loa-agent", "--config", str(config), "check-config", "--config-only").returncode == 0


def test_offline_status_after_a_crash_shows_the_last_recorded_relays(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 20.0)
    write_schedule(tmp_path, f"{{id: long, audio: tone-440Hz-20s.wav, at: '{at(3.0)}', zones: [zone-1]}}")
    config = write_config(tmp_path)
    with agent_process(config) as agent:
        wait_until(lambda: (status_json(config).get("playing") or {}).get("item") == "long", 10, "playing")
        agent.kill()  # SIGKILL: no finally, no relays opened by the agent, as at a crash
        agent.wait(timeout=10)
    result = run("loa", "--config", str(config), "status", "--lang", "en")
    assert result.returncode == 1 and result.stderr == ""
    lines = result.stdout.splitlines()
    relays = lines.index("relays   unknown now (agent not running)")
    recorded = lines[relays + 1].strip()
    assert recorded.startswith("last recorded ") and recorded.endswith(": zone-1=ON  zone-2=off")
    shown = datetime.strptime(recorded.removeprefix("last recorded ")[:19], "%Y-%m-%d %H:%M:%S")
    assert abs(shown.replace(tzinfo=VIETNAM) - datetime.now(VIETNAM)) < timedelta(minutes=1), "device time"
    assert "playing  unknown (agent not running)" in lines
    assert "None" not in result.stdout
    offline = json.loads(run("loa", "--config", str(config), "status", "--json").stdout)
    assert offline["relays"] is None
    assert offline["relays_last_known"]["closed"] == {"zone-1": True, "zone-2": False}


def test_offline_status_after_a_crash_of_an_idle_agent_knows_the_relays_were_open(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    with agent_process(config) as agent:
        agent.kill()
        agent.wait(timeout=10)
    result = run("loa", "--config", str(config), "status", "--lang", "en")
    lines = result.stdout.splitlines()
    recorded = lines[lines.index("relays   unknown now (agent not running)") + 1]
    assert recorded.endswith(": zone-1=off  zone-2=off"), result.stdout


def test_status_where_the_agent_never_ran_is_plain_words(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run("loa", "--config", str(config), "status", "--lang", "en")
    assert result.returncode == 1 and result.stderr == ""
    assert result.stdout.splitlines() == [
        f"device   test-box-01  (loa {VERSION})",
        "agent    NOT RUNNING, and it has left no records yet",
        f"         the agent is not running (nobody listens on {tmp_path / 'agent.sock'})",
    ]


def test_version(tmp_path: Path) -> None:
    for program in ("loa", "loa-agent"):
        result = run(program, "--version")
        assert (result.returncode, result.stdout, result.stderr) == (0, f"{program} {VERSION}\n", "")


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """A crew pipes into head; loa must not end with a BrokenPipeError traceback.  The play log is
    longer than a pipe holds, so loa is still writing when head has gone."""
    config = write_config(tmp_path)
    store = Store.open(tmp_path / "state")
    for n in range(3000):
        store.record_play(
            PlayRecord(f"news-{n}@x", f"news-{n}", "news.wav", "normal", ("zone-1",),
                       f"2026-11-{1 + n // 200:02d}T06:30:00.000+00:00", None, None, "missed", "clock")
        )  # fmt: skip
    store.close()
    loa = f"{shlex.quote(str(BIN / 'loa'))} --config {shlex.quote(str(config))}"
    for command in (f"{loa} status", f"{loa} playlog --json", f"{loa} playlog"):
        err = tmp_path / "loa.err"
        shell = subprocess.run(
            ["/bin/sh", "-c", f"{command} 2>{shlex.quote(str(err))} | head -1"],
            capture_output=True, text=True, timeout=60, check=False, env={**os.environ},
        )  # fmt: skip
        assert shell.returncode == 0 and shell.stdout.count("\n") == 1, (command, shell)
        assert err.read_text() == "", (command, err.read_text())
