"""The front door as a crew uses it: ``loa play``, ``loa stop`` and ``loa reload`` run as console
scripts against a running agent, and command ids as the central link will send them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.commands import CommandHandler, Execute, Result
from agent.control import request
from agent.schedule_source import file_version
from drivers.null_player import NullPlayer
from tests.agent_harness import RunningAgent, at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.test_agent_fm import fm_section, relaying, write_iq

BIN = Path(sys.executable).parent


def loa(
    box: RunningAgent, *args: str, cwd: Path | None = None, lang: str = "en"
) -> subprocess.CompletedProcess[str]:
    """``loa`` as a crew runs it; in English (``LOA_LANG``) unless ``lang`` says otherwise."""
    return subprocess.run(
        [str(BIN / "loa"), "--config", str(box.config.source), *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={**os.environ, "LOA_LANG": lang},
    )  # fmt: skip


def command_id(line: str) -> str:
    found = re.search(r"\((?:command|lệnh) (local-[0-9a-f]+)\)$", line.strip())
    assert found, f"no command id in {line!r}"
    return found.group(1)


def played(box: RunningAgent) -> list[str]:
    player = box.agent.player
    assert isinstance(player, NullPlayer)
    return [item.token for item in player.played]


# -- loa play ------------------------------------------------------------------------------------


def test_loa_play_plays_the_file_and_logs_it_as_a_local_command(tmp_path: Path) -> None:
    tone = tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        # a crew in the folder of the file types its name: loa resolves it before asking the agent
        result = loa(box, "play", tone.name, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (0, ""), result
        assert result.stdout.startswith(f"playing {tone} (command local-")
        box.wait_for(lambda: box.outcome(f"local-command-{command_id(result.stdout)}") == "completed", 5)
    (row,) = box.play_log()
    assert (row.origin, row.outcome, row.audio, row.level) == (
        "local-command",
        "completed",
        str(tone),
        "normal",
    )
    assert row.zones == ("zone-1", "zone-2") and row.actual_start is not None


def test_loa_play_emergency_preempts_the_scheduled_item_and_names_the_command(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    alert = tone_file(tmp_path, 880, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(2.0)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        result = loa(box, "play", str(alert), "--level", "emergency")
        assert result.returncode == 0, result
        command = command_id(result.stdout)
        box.wait_for(lambda: box.outcome(f"local-command-{command}") == "completed", timeout=5)
    rows = {row.item_id: row for row in box.play_log()}
    assert rows["news"].outcome == "interrupted"
    assert rows["news"].reason.startswith(f"pre-empted by emergency 'local-command-{command}'")
    assert rows[f"local-command-{command}"].level == "emergency"


def test_loa_play_zones_powers_only_those_zones(tmp_path: Path) -> None:
    tone = tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        result = loa(box, "play", str(tone), "--zones", "zone-2")
        assert result.returncode == 0, result
        box.wait_for(lambda: box.outcome(f"local-command-{command_id(result.stdout)}") == "completed", 5)
        box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=4)
        switched = {zone for _, zone, _ in box.agent.relays.history}
    assert switched == {"zone-2"}
    assert box.play_log()[0].zones == ("zone-2",)


def test_loa_play_refuses_what_cannot_play_in_one_plain_line(tmp_path: Path) -> None:
    tone = tone_file(tmp_path, 440, 0.5)
    (tmp_path / "empty.wav").write_bytes(b"")
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        refusals = {
            "missing": loa(box, "play", str(tmp_path / "nope.wav")),
            "relative": loa(box, "play", "nope.wav", cwd=tmp_path),
            "empty": loa(box, "play", str(tmp_path / "empty.wav")),
            "zone": loa(box, "play", str(tone), "--zones", "zone-1,zone-9"),
        }
        box.wait_passes(2, timeout=5)
        assert played(box) == []
        assert not box.agent.relays.history
    for why, result in refusals.items():
        assert (result.returncode, result.stderr) == (1, ""), (why, result)
        assert result.stdout.count("\n") == 1 and result.stdout.startswith("refused: "), (why, result.stdout)
    assert f"refused: file not found: {tmp_path / 'nope.wav'} (command" in refusals["missing"].stdout
    assert f"file not found: {tmp_path / 'nope.wav'}" in refusals["relative"].stdout
    assert "file is empty" in refusals["empty"].stdout
    assert "no amplifier for zone(s) zone-9 (zones: zone-1, zone-2)" in refusals["zone"].stdout
    assert box.play_log() == []


def test_loa_play_when_the_agent_is_down_says_so(tmp_path: Path) -> None:
    tone = tone_file(tmp_path, 440, 0.5)
    config = write_config(tmp_path)
    result = subprocess.run(
        [str(BIN / "loa"), "--config", str(config), "play", str(tone)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 6
    assert result.stderr == f"loa: the agent is not running (nobody listens on {tmp_path / 'agent.sock'})\n"


# -- loa stop ------------------------------------------------------------------------------------


def test_loa_stop_interrupts_what_plays_and_names_the_command(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(1.5)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        result = loa(box, "stop")
        box.wait_for(lambda: box.outcome("news") == "interrupted", timeout=2)
        again = loa(box, "stop")
    assert result.returncode == 0 and result.stdout.startswith("stopped 'news' (command local-")
    command = command_id(result.stdout)
    (row,) = box.play_log()
    assert row.reason.startswith(f"stopped by a local command ({command}) after ")
    assert again.returncode == 0 and again.stdout.startswith("nothing was playing (command local-")


def test_loa_stop_cancels_a_loa_play_waiting_behind_what_plays(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 8.0)
    tone = tone_file(tmp_path, 880, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-8s.wav, at: '{at(1.5)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        waiting = subprocess.Popen(  # loa play waits for its answer while the play waits
            [str(BIN / "loa"), "--config", str(box.config.source), "play", str(tone)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "LOA_LANG": "vi"},
        )  # fmt: skip
        box.wait_for(lambda: len(box.agent.engine.queue) == 1, timeout=5)
        stopped = loa(box, "stop", lang="vi")
        answer, _ = waiting.communicate(timeout=30)
        box.wait_passes(2, timeout=5)
        after = played(box)
    stop, play = command_id(stopped.stdout), command_id(answer)
    assert stopped.stdout == f"đã dừng 'news'; đã hủy 1 lệnh phát đang chờ (lệnh {stop})\n"
    assert (waiting.returncode, answer) == (
        1, f"bị từ chối: đã hủy: lệnh dừng {stop} đến khi lệnh này đang chờ phát (lệnh {play})\n",
    )  # fmt: skip
    assert [token.partition("@")[0] for token in after] == ["news"], "the cancelled play never started"
    row = {row.item_id: row for row in box.play_log()}[f"local-command-{play}"]
    assert (row.outcome, row.actual_start) == ("skipped", None)
    assert row.reason == f"cancelled: stop (local command {stop}) came while it waited to play"


def test_the_crew_gets_its_answers_in_vietnamese_by_default(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(1.5)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        missing = loa(box, "play", str(tmp_path / "nope.wav"), lang="")  # LOA_LANG unset: Vietnamese
        wrong_zone = loa(box, "play", "tone-440Hz-6s.wav", "--zones", "zone-9", cwd=tmp_path, lang="vi")
        stopped = loa(box, "stop", lang="")
        box.wait_for(lambda: box.outcome("news") == "interrupted", timeout=2)
        again = loa(box, "stop", lang="vi")
        reloaded = loa(box, "reload", lang="vi")
    assert missing.returncode == 1
    assert missing.stdout.startswith(f"bị từ chối: không tìm thấy tệp: {tmp_path / 'nope.wav'} (lệnh local-")
    assert "không có âm ly cho vùng zone-9 (các vùng có: zone-1, zone-2)" in wrong_zone.stdout
    assert stopped.returncode == 0 and stopped.stdout.startswith("đã dừng 'news' (lệnh local-")
    assert again.stdout.startswith("không có gì đang phát (lệnh local-")
    assert reloaded.stdout.startswith("đã nhận lịch: 1 mục đang áp dụng (phiên bản ")


def test_loa_stop_during_fm_pauses_the_relay(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=True)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, extra=fm_section(iq))) as box:
        box.wait_for(lambda: relaying(box), timeout=6)
        result = loa(box, "stop")
        assert result.returncode == 0, result
        assert re.match(r"FM relay paused until \d\d:\d\d \(command local-[0-9a-f]+\)\n$", result.stdout)
        box.wait_for(lambda: not relaying(box), timeout=2)
        box.wait_passes(3, timeout=5)  # the carrier is still there: the pause, not the policy, holds it
        assert not relaying(box) and box.agent.fm is not None and box.agent.fm.carrier_present
        status = request(box.config.control.socket, "status")
        assert status["fm"]["relaying"] is False and status["fm"]["paused_until"] is not None
        shown = loa(box, "status", "--lang", "en").stdout
        assert re.search(
            r"^fm +[\d.]+ MHz PAUSED by loa stop until \d{4}-\d\d-\d\d \d\d:\d\d", shown, re.M
        ), shown


# -- loa reload ----------------------------------------------------------------------------------


def test_loa_reload_accepts_a_good_file_and_says_its_version(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        schedule = write_schedule(
            tmp_path,
            f"{{id: a, audio: tone-440Hz-0.5s.wav, at: '{at(3600)}'}}",
            f"{{id: b, audio: tone-440Hz-0.5s.wav, at: '{at(7200)}'}}",
        )
        result = loa(box, "reload")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"schedule accepted: 2 items in force (version {file_version(schedule)})\n"


def test_loa_reload_refuses_a_bad_file_and_the_old_schedule_plays_on(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(4.0)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        (tmp_path / "schedule.yaml").write_text(
            "items:\n  - {id: x, audoi: y.wav, at: '2026-12-01T06:30:00+07:00'}\n  - {id: y}\n"
        )
        result = loa(box, "reload")
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=8)
    assert (result.returncode, result.stderr) == (2, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "schedule refused, the agent keeps the schedule it had: schedule file refused"
    assert len(lines) > 2 and all(line.startswith(f"  {tmp_path / 'schedule.yaml'}:") for line in lines[1:])
    assert any(":2: items[0].audoi" in line for line in lines)
    assert any(":3: items[1]" in line for line in lines)


# -- command ids: what the central link relies on ---------------------------------------------------


def test_a_repeated_command_id_is_a_duplicate_with_no_effect(tmp_path: Path) -> None:
    tone = tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        socket = box.config.control.socket
        first = request(socket, "play", timeout=10, id="central-41", file=str(tone))
        again = request(socket, "play", timeout=10, id="central-41", file=str(tone))
        box.wait_for(lambda: box.outcome("local-command-central-41") == "completed", timeout=5)
        stop = request(socket, "stop", id="central-42")
        stop_again = request(socket, "stop", id="central-42")
    assert first["result"] == "done" and first["id"] == "central-41"
    assert again["result"] == "duplicate" and again["id"] == "central-41" and again["ok"] is True
    assert stop["result"] == "done" and stop_again["result"] == "duplicate"
    assert [row.item_id for row in box.play_log()] == ["local-command-central-41"]


def test_a_command_id_resent_while_the_first_is_carried_out_is_a_duplicate(tmp_path: Path) -> None:
    """The link resends a command it has no answer for yet (MQTT redelivers): the resend must not
    play the file a second time while the first waits for its relays to settle."""
    tone = tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path, preroll="2s")) as box:
        socket = box.config.control.socket
        answers: list[dict[str, Any]] = []
        first = threading.Thread(
            target=lambda: answers.append(request(socket, "play", timeout=10, id="central-7", file=str(tone)))
        )
        first.start()
        box.wait_for(lambda: bool(box.agent.awaiting), timeout=3)  # the agent has it, relays closing
        again = request(socket, "play", timeout=10, id="central-7", file=str(tone))
        first.join(10)
        box.wait_for(lambda: box.outcome("local-command-central-7") == "completed", timeout=5)
        box.wait_passes(2, timeout=5)
    assert answers[0]["result"] == "done"
    assert again["result"] == "duplicate", again
    assert len(played(box)) == 1
    assert len(box.play_log()) == 1


def test_the_handler_takes_each_id_once_under_concurrent_submits() -> None:
    posted: list[Execute] = []
    release = threading.Event()

    def post(event: object) -> None:  # a main loop that answers when the test lets it
        assert isinstance(event, Execute)
        posted.append(event)
        threading.Thread(target=lambda: release.wait(5) and event.pending.resolve(Result.DONE)).start()

    handler = CommandHandler(post, zones=frozenset({"zone-1"}), status=dict, wait=5)
    acks = []
    threads = [
        threading.Thread(
            target=lambda: acks.append(handler.submit("stop", {}, origin="central", command_id="c-1"))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(posted) == 1
    assert sorted(ack.result.value for ack in acks) == ["done"] + ["duplicate"] * 7


def test_a_slow_main_loop_answers_accepted_not_timed_out(tmp_path: Path) -> None:
    """The agent answers 'accepted' when the loop has not carried a command out within its wait
    (5 s); loa must wait longer than that for the answer, and say it plainly."""
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        schedule = box.agent.schedule
        reload = schedule.reload
        busy = threading.Event()

        def slow_reload(store: Any) -> Any:
            busy.set()
            time.sleep(6.0)  # a main loop held up (a huge schedule on a slow SD card, say)
            return reload(store)

        schedule.reload = slow_reload  # type: ignore[method-assign]
        result = loa(box, "reload")
        assert busy.is_set()
    assert (result.returncode, result.stderr) == (0, ""), result
    assert re.fullmatch(r"accepted: being carried out \(command local-[0-9a-f]+\)\n", result.stdout)
