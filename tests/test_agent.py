"""The agent end to end: real store, real scheduler, gpiozero MockFactory, null and libVLC players."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.clock_trust import ClockTrust
from agent.control import request
from agent.store import Store
from drivers.player import PlayerEvent
from drivers.wav_samples import dominant_frequency, read_wav
from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_finished_wav


def stamp(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def relay_times(agent: object, zone: str) -> list[tuple[float, bool]]:
    return [(t, closed) for t, z, closed in agent.relays.history if z == zone]  # type: ignore[attr-defined]


def test_item_plays_on_time_with_relays_around_it(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 1.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-1s.wav, at: '{at(2.5)}', zones: [zone-1]}}")
    with running_agent(write_config(tmp_path, preroll="1s", postroll="1s")) as box:
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=8)
        box.wait_for(lambda: not box.agent.relays.states()["zone-1"], timeout=4)
        history = relay_times(box.agent, "zone-1")
        assert relay_times(box.agent, "zone-2") == []  # only the item's zone is powered
    row = box.play_log()[0]
    scheduled, started, ended = stamp(row.scheduled_start), stamp(row.actual_start), stamp(row.ended)
    assert abs((started - scheduled).total_seconds()) < 0.2
    assert 0.8 < (ended - started).total_seconds() < 1.5
    (on_at, closed), (off_at, opened) = history
    assert closed and not opened
    # relay history is on the monotonic clock, the play log on the wall clock: line them up
    to_wall = time.time() - time.monotonic()
    closed_before = started.timestamp() - (on_at + to_wall)
    opened_after = (off_at + to_wall) - ended.timestamp()
    assert 0.8 < closed_before < 1.2, "relay must close `preroll` (1 s) before the audio starts"
    assert 0.8 < opened_after < 1.5, "relay must open `postroll` (1 s) after the audio ends"


def test_missing_audio_is_logged_failed_and_next_item_still_plays(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: gone, audio: nowhere.wav, at: '{at(1.5)}'}}",
        f"{{id: after, audio: tone-440Hz-0.5s.wav, at: '{at(2.0)}'}}",
    )
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("after") == "completed", timeout=8)
    rows = {r.item_id: r for r in box.play_log()}
    assert rows["gone"].outcome == "failed"
    assert "file not found" in rows["gone"].reason
    assert (
        abs((stamp(rows["after"].actual_start) - stamp(rows["after"].scheduled_start)).total_seconds()) < 0.2
    )


def test_emergency_preempts_normal(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 4.0)
    tone_file(tmp_path, 880, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: news, audio: tone-440Hz-4s.wav, at: '{at(1.5)}'}}",
        f"{{id: storm, audio: tone-880Hz-0.5s.wav, at: '{at(2.5)}', priority: emergency}}",
    )
    with running_agent(write_config(tmp_path)) as box:
        box.wait_for(lambda: box.outcome("storm") == "completed", timeout=8)
    rows = [r for r in box.play_log() if r.item_id == "news"]
    assert rows[0].outcome == "interrupted"
    assert "storm" in rows[0].reason


def test_untrusted_clock_plays_nothing_and_says_so(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    start = at(1.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{start}'}}")
    clock = ClockTrust(
        True,
        kernel_synced=lambda: False,
        sync_markers=(),
        agent_marker=None,
    )
    config = write_config(tmp_path, require_sync=True, catch_up="1s")
    with running_agent(config, clock=clock) as box:
        box.wait_for(lambda: box.agent.clock_state.reason != "not checked yet", timeout=2)
        # past the item's start and its catch-up: a trusted clock would have played it by now
        too_late = stamp(start) + box.config.schedule.catch_up
        box.wait_for(lambda: box.agent.wall() > too_late, timeout=10)
        box.wait_passes(2, timeout=5)
        status = request(box.config.control.socket, "status")
        assert status["clock"]["trusted"] is False
        assert status["playing"] is None
        assert not any(box.agent.relays.states().values())
        assert box.agent.led is not None and box.agent.led.code.name == "CLOCK_UNTRUSTED"
    assert box.play_log() == []


def test_restart_closes_row_left_playing_and_logs_missed(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    write_schedule(tmp_path, f"{{id: long, audio: tone-440Hz-6s.wav, at: '{at(1.0)}'}}")
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_for(lambda: any(r.actual_start for r in box.play_log()), timeout=5)
        # simulate a power cut: the row stays 'playing' because the agent never records the end
        box.agent.store.put_state("watermark", at(-60))
        box.agent._shutdown = lambda: None  # type: ignore[method-assign]
    (cut,) = box.play_log()
    assert cut.outcome == "playing" and cut.ended is None and cut.actual_start is not None
    store = Store.open_readonly(box.config.storage.dir)
    alive_at = store.get_state("alive_at")  # the agent's own mark, written from its main loop
    store.close()
    assert isinstance(alive_at, str)
    write_schedule(tmp_path, f"{{id: while-off, audio: tone-440Hz-6s.wav, at: '{at(-20)}'}}")
    with running_agent(config) as box2:
        box2.wait_for(lambda: box2.outcome("while-off") == "missed", timeout=5)
    rows = {r.item_id: r for r in box2.play_log()}
    assert rows["long"].outcome == "interrupted"
    ended = max(stamp(cut.actual_start), stamp(alive_at))
    assert stamp(rows["long"].ended) == ended
    local = ended.astimezone(box2.config.device.timezone)
    assert rows["long"].reason == f"agent stopped while playing; last known alive at {local:%H:%M:%S}"


def test_bad_schedule_reload_keeps_current_schedule(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(3.0)}'}}")
    with running_agent(write_config(tmp_path)) as box:
        (tmp_path / "schedule.yaml").write_text("items:\n  - {id: x, audoi: y.wav, at: 'bad'}\n")
        reply = request(box.config.control.socket, "reload")
        assert not reply["ok"] and reply["result"] == "rejected"
        assert "schedule.yaml:2: items[0].audoi" in reply["problems"][0]
        assert box.agent.schedule.error is not None
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=8)
        status = request(box.config.control.socket, "status")
    assert "schedule.yaml:2" in status["schedule"]["error"]


@pytest.mark.vlc
def test_libvlc_plays_the_schedule_at_the_right_pitch(tmp_path: Path) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    tone_file(tmp_path, 523.25, 1.5)
    out = tmp_path / "out.wav"
    args = ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]
    write_schedule(tmp_path, f"{{id: chime, audio: tone-523.25Hz-1.5s.wav, at: '{at(2.0)}'}}")
    with running_agent(write_config(tmp_path, backend="vlc", vlc_args=args)) as box:
        box.wait_for(lambda: box.outcome("chime") == "completed", timeout=10)
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 1.5) < 0.05
    assert abs(dominant_frequency(samples, rate) - 523.25) < 523.25 * 0.01
    row = box.play_log()[0]
    assert abs((stamp(row.actual_start) - stamp(row.scheduled_start)).total_seconds()) < 0.1


def test_back_to_back_items_keep_relays_closed(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: first, audio: tone-440Hz-0.5s.wav, at: '{at(2.0)}'}}",
        f"{{id: second, audio: tone-440Hz-0.5s.wav, at: '{at(4.3)}'}}",  # gap > preroll
    )
    with running_agent(write_config(tmp_path, preroll="1s", postroll="1s")) as box:
        box.wait_for(lambda: box.outcome("second") == "completed", timeout=8)
        box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=4)
        for zone in ("zone-1", "zone-2"):
            # one close before the first, one open after the second: post-roll and pre-roll overlap
            assert [closed for _, closed in relay_times(box.agent, zone)] == [True, False]


def test_each_item_is_prepared_when_its_relays_close_and_played_from_it(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.3)
    write_schedule(
        tmp_path,
        f"{{id: first, audio: tone-440Hz-0.3s.wav, at: '{at(2.0)}'}}",
        f"{{id: second, audio: tone-440Hz-0.3s.wav, at: '{at(3.5)}'}}",
    )
    with running_agent(write_config(tmp_path, preroll="1s")) as box:
        box.wait_for(lambda: box.outcome("second") == "completed", timeout=8)
        player = box.agent.player
        prepared = list(player.prepared)  # type: ignore[attr-defined]
        played = list(player.played)  # type: ignore[attr-defined]
    rows = box.play_log()
    assert [token for token, _ in prepared] == [row.key for row in rows]
    assert all(path == tmp_path / "tone-440Hz-0.3s.wav" for _, path in prepared)
    assert [(item.token, item.prepared) for item in played] == [(row.key, True) for row in rows]


def test_events_that_queue_up_share_a_pass(tmp_path: Path) -> None:
    # A burst (10,000 broker acknowledgements while a spooled backlog goes out) must not cost a
    # whole pass of the loop per event.  The loop is held at the end of a pass while they queue.
    write_schedule(tmp_path)
    with running_agent(write_config(tmp_path)) as box:
        box.wait_passes(2, 10)
        stale = [PlayerEvent("ended", f"gone-{n}", time.monotonic(), time.time()) for n in range(300)]
        with box.agent.board._lock:  # the pass in progress waits to publish its status
            before = box.agent.passes
            for event in stale:
                box.agent.post(event)
        box.wait_for(lambda: box.agent.events.empty(), 10)
        box.wait_passes(1, 10)
        assert box.agent.passes - before <= 10  # 300 events, at most 100 a pass
