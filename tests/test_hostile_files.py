"""Hostile schedule and config files: every one is a clear error at file:line, never a crash.

Each input here once raised OverflowError, ValueError or RecursionError past the readers (or
took gigabytes), so ``loa-agent run`` exited at start and on SIGHUP and systemd restarted it into
the same crash.  Now the readers refuse them with the place, the key, the value and what was
expected, and the agent keeps its last good schedule.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config import load_config
from agent.control import request
from agent.runtime import Reload
from agent.schedule_source import check_audio, read_schedule_file
from foundation import yaml_source
from foundation.errors import ConfigError, ScheduleError
from foundation.yaml_source import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NUMBER_CHARS,
    MAX_REPEATED,
    MAX_VALUES,
    load_yaml_text,
)
from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file

VN = ZoneInfo("Asia/Ho_Chi_Minh")
ZONES = frozenset({"zone-1", "zone-2"})
BIN = Path(sys.executable).parent

AT = "at: 2025-03-02T17:00:00+07:00"
HUGE = "9" * 5000  # past Python's 4300-digit limit on int <-> str
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10 if prev else ['lol'] * 10)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)  # about 400 bytes; written out it would be 10**9 values


def item_line(*fields: str) -> str:
    return "items:\n  - {id: a, audio: a.mp3, " + ", ".join(fields) + "}\n"


# (schedule text, the start of the one problem after the file name)
HOSTILE_SCHEDULES = {
    "valid_until in year 9999": (
        item_line(AT, "valid_until: 9999-12-31"),
        ":2: items[0].valid_until: '9999-12-31' is out of range: expected a date from 2000-01-01 "
        "to 2199-12-31 (leave out 'valid_until' for no end)",
    ),
    "valid_from in year 1": (
        item_line(AT, "valid_from: 0001-01-01"),
        ":2: items[0].valid_from: '0001-01-01' is out of range: expected a date from 2000-01-01",
    ),
    "dtstart in year 1": (
        item_line("rrule: FREQ=DAILY", "dtstart: 0001-01-01"),
        ":2: items[0].dtstart: '0001-01-01' is out of range: expected a local date-time from 2000-01-01",
    ),
    "dtstart in year 9999": (
        item_line("rrule: FREQ=DAILY", "dtstart: 9999-12-31 23:00"),
        ":2: items[0].dtstart: '9999-12-31 23:00' is out of range",
    ),
    "at near the end of time": (
        item_line("at: 9999-12-31T23:59:00-07:00"),
        ":2: items[0].at: '9999-12-31T23:59:00-07:00' is out of range: expected a date-time",
    ),
    "at in year 1": (
        item_line("at: 0001-01-01T00:00:00+07:00"),
        ":2: items[0].at: '0001-01-01T00:00:00+07:00' is out of range",
    ),
    "UNTIL in year 9999": (
        item_line("rrule: FREQ=DAILY;UNTIL=99991231", "dtstart: 2025-03-01"),
        ":2: items[0].rrule: value 'FREQ=DAILY;UNTIL=99991231': expected UNTIL from 2000-01-01 "
        "to 2199-12-31 (leave UNTIL out for no end)",
    ),
    "volume of 5000 digits": (
        item_line(AT, f"volume: {HUGE}"),
        f":2: items[0].volume: '{'9' * 55}...' is a number of 5000 characters: "
        f"expected at most {MAX_NUMBER_CHARS}",
    ),
    "id of 5000 digits": (
        f"items:\n  - id: {HUGE}\n    audio: a.mp3\n    {AT}\n",
        ":2: items[0].id: '9999",
    ),
    "huge volume": (
        item_line(AT, f"volume: {'9' * 90}"),
        ":2: items[0].volume: value '9999",
    ),
    "deeply nested lists": (
        "items: " + "[" * 2000 + "]" * 2000 + "\n",
        f":1:{len('items: ') + MAX_DEPTH}: lists and mappings nested more than {MAX_DEPTH} levels deep",
    ),
    "deeply nested mappings": (
        "items:\n" + "".join(" " * depth + "a:\n" for depth in range(1, 600)),
        f":{MAX_DEPTH + 1}:{MAX_DEPTH + 1}: lists and mappings nested more than {MAX_DEPTH} levels deep",
    ),
    "an alias bomb": (
        ALIAS_BOMB,
        f":5:36: aliases ('*name') repeat more than {MAX_REPEATED} values",  # the 8th '*d' of 'e'
    ),
}


def refused_schedule(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "schedule.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ScheduleError) as caught:
        read_schedule_file(path, VN, ZONES)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(("text", "expected"), HOSTILE_SCHEDULES.values(), ids=HOSTILE_SCHEDULES.keys())
def test_hostile_schedule_is_a_placed_error(tmp_path: Path, text: str, expected: str) -> None:
    found = refused_schedule(tmp_path, text)
    assert found[0].startswith(f"{tmp_path / 'schedule.yaml'}{expected}"), found


def test_the_bounds_leave_real_files_alone() -> None:
    # 32 levels: the top mapping and 31 lists in it; one more is refused.
    assert load_yaml_text("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "ok.yaml").problems == []
    with pytest.raises(ConfigError, match="nested more than"):
        load_yaml_text("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, "deep.yaml")
    text = "zones: &all [north, market]\nitems:\n" + "".join(
        f"  - {{id: n{i}, zones: *all}}\n" for i in range(500)
    )
    document = load_yaml_text(text, "aliases.yaml")
    assert document.problems == [] and document.data["items"][499]["zones"] == ["north", "market"]
    number = "9" * MAX_NUMBER_CHARS
    assert load_yaml_text(f"a: {number}\n", "ok.yaml").data == {"a": int(number)}


def test_too_many_values_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_VALUES >= 200_000, "a schedule of 10,000 items holds about 170,000 values"
    monkeypatch.setattr(yaml_source, "MAX_VALUES", 1000)  # the same check, without 300,000 values
    text = "items:\n" + "".join(f"  - {n}\n" for n in range(1010))
    [found] = refused_schedule(tmp_path, text)
    assert found.startswith(
        f"{tmp_path / 'schedule.yaml'}:999:5: the file has more than 1000 values"
    )  # the 1001st value


def test_a_file_too_big_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    with path.open("wb") as sparse:  # a hole: no disk used, and the size alone is refused
        sparse.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ScheduleError) as caught:
        read_schedule_file(path, VN, ZONES)
    assert str(caught.value) == (
        f"{path}: the file is {MAX_FILE_BYTES + 1} bytes: expected at most {MAX_FILE_BYTES} bytes (4 MiB)"
    )


def _in_thread(call: object) -> BaseException | None:
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()  # type: ignore[operator]
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "blocked"
    return outcome[0]


@pytest.mark.parametrize(("make", "kind"), [(os.mkfifo, "a FIFO"), (os.mkdir, "a directory")])
def test_a_schedule_file_that_is_not_a_file(tmp_path: Path, make: object, kind: str) -> None:
    path = tmp_path / "schedule.yaml"
    make(path)  # type: ignore[operator]
    error = _in_thread(lambda: read_schedule_file(path, VN, ZONES))
    assert isinstance(error, ScheduleError)
    assert str(error) == f"{path}: cannot read: it is {kind}, not a file"


@pytest.mark.parametrize(
    ("audio", "reason"),
    [
        ('"bad\\0name.mp3"', "is not a path the system accepts (it holds a NUL character)"),
        ("x" * 5000 + ".mp3", "cannot be read (File name too long)"),
        ("a-fifo.mp3", "is a FIFO, not an audio file"),
        ("a-folder.mp3", "is a directory, not an audio file"),
    ],
)
def test_check_audio_names_what_the_audio_path_is(tmp_path: Path, audio: str, reason: str) -> None:
    os.mkfifo(tmp_path / "a-fifo.mp3")
    (tmp_path / "a-folder.mp3").mkdir()
    path = tmp_path / "schedule.yaml"
    path.write_text(f"items:\n  - id: a\n    audio: {audio}\n    {AT}\n")
    error = _in_thread(lambda: check_audio(path, VN, ZONES))
    assert isinstance(error, ScheduleError)
    [problem] = error.problems
    assert str(problem).startswith(f"{path}:3: items[0].audio: ")
    assert reason in str(problem)
    assert str(problem).endswith("expected an audio file the agent can read")


# -- the agent config ------------------------------------------------------------------------------

CONFIG = "device: {id: xa-1}\ngpio:\n  pin_factory: mock\n  amplifiers:\n    - {name: zone-1, pin: 17}\n"
HOSTILE_CONFIGS = {
    "pin of 5000 digits": (
        CONFIG.replace("pin: 17", f"pin: {HUGE}"),
        f":5: gpio.amplifiers[0].pin: '{'9' * 55}...' is a number of 5000 characters",
    ),
    "huge volume": (
        CONFIG + f"audio: {{volume: {'9' * 90}}}\n",
        ":6: audio.volume: '9999",
    ),
    "huge negative float": (CONFIG + f"fm: {{squelch: {{min_level_dbfs: -{HUGE}.5}}}}\n", ":6: fm.squelch"),
    "deeply nested": (CONFIG + "audio: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n", ":6:"),
    "an alias bomb": (CONFIG + ALIAS_BOMB, ":10:36: aliases ('*name') repeat more than"),
    "a huge duration": (CONFIG.replace("mock\n", f"mock\n  preroll: {HUGE}d\n"), ":4: gpio.preroll"),
}


@pytest.mark.parametrize(("text", "expected"), HOSTILE_CONFIGS.values(), ids=HOSTILE_CONFIGS.keys())
def test_hostile_config_is_a_placed_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = [str(problem) for problem in caught.value.problems]
    assert found[0].startswith(f"{path}{expected}"), found
    assert len(found) == 1, "one problem per mistake: " + "\n".join(found)


# -- check-config and the running agent ------------------------------------------------------------

# One of each kind of failure that stopped the agent: OverflowError, ValueError, RecursionError and
# the memory an alias bomb takes.  check-config sees them all; the agent two at start, two on reload.
AGENT_CASES = ["valid_until in year 9999", "volume of 5000 digits", "deeply nested lists", "an alias bomb"]


def run_check_config(config: Path, *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [str(BIN / "loa-agent"), "--config", str(config), "check-config", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stderr


@pytest.mark.parametrize("case", AGENT_CASES)
def test_check_config_refuses_a_hostile_schedule_with_its_place(tmp_path: Path, case: str) -> None:
    text, expected = HOSTILE_SCHEDULES[case]
    config = write_config(tmp_path)
    (tmp_path / "schedule.yaml").write_text(text)
    code, stderr = run_check_config(config)
    assert code == 2, stderr
    assert f"loa-agent: {tmp_path / 'schedule.yaml'}{expected}" in stderr
    assert "Traceback" not in stderr


def test_check_config_refuses_a_hostile_config_with_its_place(tmp_path: Path) -> None:
    text, expected = HOSTILE_CONFIGS["pin of 5000 digits"]
    (tmp_path / "agent.yaml").write_text(text)
    code, stderr = run_check_config(tmp_path / "agent.yaml", "--config-only")
    assert code == 2, stderr
    assert stderr.startswith(f"loa-agent: {tmp_path / 'agent.yaml'}{expected}")


@pytest.mark.parametrize("case", AGENT_CASES[0::2])
def test_agent_starts_on_the_stored_schedule_when_the_file_is_hostile(tmp_path: Path, case: str) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(4.5)}'}}")
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_for(lambda: box.agent.schedule.local.version != "", timeout=5)
    (tmp_path / "schedule.yaml").write_text(HOSTILE_SCHEDULES[case][0])
    with running_agent(config) as box:
        assert box.agent.schedule.local.from_store
        error = box.agent.schedule.error or ""
        assert f"{tmp_path / 'schedule.yaml'}{HOSTILE_SCHEDULES[case][1]}" in error
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=12)


@pytest.mark.parametrize("case", AGENT_CASES[1::2])
def test_agent_keeps_its_schedule_when_a_hostile_file_is_reloaded(tmp_path: Path, case: str) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(3.5)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        (tmp_path / "schedule.yaml").write_text(HOSTILE_SCHEDULES[case][0])
        box.agent.post(Reload())  # what SIGHUP does
        box.wait_for(lambda: box.agent.schedule.error is not None, timeout=60)
        reply = request(box.config.control.socket, "reload", timeout=60.0)
        assert reply["result"] == "rejected"
        assert reply["problems"][0].startswith(f"{tmp_path / 'schedule.yaml'}{HOSTILE_SCHEDULES[case][1]}")
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=12)
