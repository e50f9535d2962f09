"""The output plan carried out by the real agent: relays, player and LED as a commune hears them.

Real daemon wiring, store and scheduler, gpiozero's MockFactory (``relays.history`` is on the
monotonic clock), the null player (``played`` too) or real libVLC writing a WAV.  Clock trust comes
from a probe the test switches mid-run, as NTP would be lost on a pole.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.clock_trust import ClockTrust
from agent.control import request
from agent.status import render
from agent.store import Store
from drivers.null_player import NullPlayer
from drivers.wav_samples import dominant_frequency, read_wav
from tests.agent_harness import RunningAgent, at, running_agent, write_config, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_finished_wav
from tests.test_agent_fm import fm_section, relaying, write_iq

MARGIN = 0.3  # how late a loop pass may carry out a plan on a busy test machine (seconds)


def stamp(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def wall(monotonic: float) -> float:
    """A monotonic instant (relay history, null player) on the wall clock (the play log)."""
    return monotonic + time.time() - time.monotonic()


def switches(box: RunningAgent, zone: str) -> list[tuple[float, bool]]:
    return [(wall(t), closed) for t, z, closed in box.agent.relays.history if z == zone]


def null_player(box: RunningAgent) -> NullPlayer:
    player = box.agent.player
    assert isinstance(player, NullPlayer)
    return player


class NtpProbe:
    """The kernel's NTP flag, switched by the test; no /run markers keep trust after it clears."""

    def __init__(self) -> None:
        self.synced = threading.Event()
        self.synced.set()

    def clock(self) -> ClockTrust:
        return ClockTrust(True, kernel_synced=self.synced.is_set, sync_markers=(), agent_marker=None)


def lose_trust_once_playing(box: RunningAgent, probe: NtpProbe, item: str) -> None:
    box.wait_for(lambda: box.outcome(item) == "playing", timeout=6)
    probe.synced.clear()
    box.wait_for(lambda: not box.agent.clock_state.trusted, timeout=3)


# -- clock trust lost while an item plays ------------------------------------------------------------


def test_an_item_plays_to_its_end_when_the_clock_stops_being_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tone_file(tmp_path, 440, 4.0)
    tone_file(tmp_path, 880, 0.5)
    write_schedule(
        tmp_path,
        f"{{id: long, audio: tone-440Hz-4s.wav, at: '{at(2.0)}', zones: [zone-1]}}",
        # falls due while `long` plays on the untrusted clock; its pre-roll would close zone-2 at +3 s
        f"{{id: during, audio: tone-880Hz-0.5s.wav, at: '{at(4.5)}', zones: [zone-2]}}",
    )
    probe = NtpProbe()
    config = write_config(tmp_path, require_sync=True, preroll="1s", postroll="1s")
    caplog.set_level(logging.INFO)
    with running_agent(config, clock=probe.clock()) as box:
        lose_trust_once_playing(box, probe, "long")
        assert box.agent.relays.states() == {"zone-1": True, "zone-2": False}
        assert box.agent.led is not None and box.agent.led.code.name == "CLOCK_UNTRUSTED"
        box.wait_for(lambda: box.outcome("during") == "missed", timeout=6)
        refused = request(box.config.control.socket, "play", file=str(tmp_path / "tone-880Hz-0.5s.wav"))
        assert refused["result"] == "rejected" and "untrusted clock" in refused["reason"]
        box.wait_for(lambda: box.outcome("long") == "completed", timeout=6)
        box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=3)
        zone_1, zone_2 = switches(box, "zone-1"), switches(box, "zone-2")
        probe.synced.set()  # trust comes back: what was missed stays missed, nothing plays late
        box.wait_for(lambda: box.agent.clock_state.trusted, timeout=3)
        box.wait_passes(2, timeout=5)
        played = [item.token.partition("@")[0] for item in null_player(box).played]
    rows = {row.item_id: row for row in box.play_log()}
    long, during = rows["long"], rows["during"]
    started, ended = stamp(long.actual_start).timestamp(), stamp(long.ended).timestamp()
    assert 3.8 < ended - started < 4.0 + MARGIN, "the item played its whole length"
    assert [closed for _, closed in zone_1] == [True, False], "zone-1 stayed closed the whole time"
    assert zone_1[0][0] < started and zone_1[1][0] > ended
    assert zone_2 == [], "nothing was powered for an item that could not start"
    assert played == ["long"]
    assert during.actual_start is None
    assert during.reason.startswith("not started: clock not trusted (")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        message.startswith(f"{during.key} missed: not started: clock not trusted") for message in warnings
    )


@pytest.mark.vlc
def test_libvlc_plays_the_whole_item_when_trust_is_lost_midway(tmp_path: Path) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    tone_file(tmp_path, 523.25, 2.5)
    out = tmp_path / "out.wav"
    args = ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]
    write_schedule(tmp_path, f"{{id: chime, audio: tone-523.25Hz-2.5s.wav, at: '{at(2.0)}'}}")
    probe = NtpProbe()
    config = write_config(tmp_path, backend="vlc", vlc_args=args, require_sync=True)
    with running_agent(config, clock=probe.clock()) as box:
        lose_trust_once_playing(box, probe, "chime")
        box.wait_for(lambda: box.outcome("chime") == "completed", timeout=8)
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 2.5) < 0.05, "the whole file was heard"
    assert abs(dominant_frequency(samples, rate) - 523.25) < 523.25 * 0.01


# -- FM gets pre-roll and post-roll like every source ---------------------------------------------


def test_fm_relays_close_preroll_before_the_stream_and_open_postroll_after(tmp_path: Path) -> None:
    iq = write_iq(tmp_path, station=True)
    write_schedule(tmp_path)
    config = write_config(tmp_path, preroll="1s", postroll="1500ms", extra=fm_section(iq))
    with running_agent(config) as box:
        box.wait_for(lambda: relaying(box), timeout=6)
        stream = null_player(box).played[0]
        assert stream.path is None, "the FM stream, not a file"
        reply = request(box.config.control.socket, "stop")
        assert reply["result"] == "done" and reply["reason"].startswith("FM relay paused until ")
        fm = box.agent.fm
        assert fm is not None
        box.wait_for(lambda: fm.last_end is not None, timeout=2)  # the loop's pass after the answer
        assert fm.last_end is not None
        stopped = fm.last_end.timestamp()
        box.wait_for(lambda: not box.agent.relays.states()["zone-2"], timeout=4)
        zone_2 = switches(box, "zone-2")
        assert switches(box, "zone-1") == []
    assert [closed for _, closed in zone_2] == [True, False], "one close, one open: no chatter"
    (closed_at, _), (opened_at, _) = zone_2
    assert 1.0 <= wall(stream.started) - closed_at < 1.0 + MARGIN, "FM waits `preroll` for its relay"
    assert 1.5 <= opened_at - stopped < 1.5 + MARGIN, "FM's relay opens `postroll` after it stops"


# -- a pre-empting emergency waits for its own relays --------------------------------------------


def test_a_preempting_emergency_into_open_zones_closes_them_first(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    alert = tone_file(tmp_path, 880, 0.5)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(2.0)}', zones: [zone-1]}}")
    with running_agent(write_config(tmp_path, preroll="1s", postroll="1s")) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        asked = time.time()
        reply = request(
            box.config.control.socket,
            "play",
            timeout=10,
            file=str(alert),
            level="emergency",
            zones=["zone-2"],
        )
        assert reply["result"] == "done", reply
        box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=6)
        zone_2 = switches(box, "zone-2")
        played = null_player(box).played
    rows = {row.item_id: row for row in box.play_log()}
    command = f"local-command-{reply['id']}"
    assert rows["news"].outcome == "interrupted" and command in rows["news"].reason
    assert rows[command].outcome == "completed" and rows[command].zones == ("zone-2",)
    alert_started = next(wall(p.started) for p in played if p.token.startswith(command))
    (closed_at, closed), *_ = zone_2
    assert closed and closed_at >= asked, "zone-2 was open until the emergency came"
    assert 1.0 <= alert_started - closed_at < 1.0 + MARGIN, "the emergency waits `preroll`"


# -- a stalled player ------------------------------------------------------------------------------


def test_a_stalled_player_fails_the_item_opens_the_relays_and_shows_the_fault(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 30.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-30s.wav, at: '{at(2.0)}', zones: [zone-1]}}")
    with running_agent(write_config(tmp_path, preroll="500ms", postroll="1s")) as box:
        player = null_player(box)
        player.stall_next()  # stalls after 3 s (the null player's default stall_timeout)
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        box.wait_for(lambda: box.outcome("news") == "failed", timeout=3.0 + 3)
        box.wait_passes(2, timeout=5)
        status = request(box.config.control.socket, "status", timeout=10)
        shown = render(status, box.config.device.timezone)
        box.wait_for(lambda: not box.agent.relays.states()["zone-1"], timeout=1.0 + 3)
        player.recover()
        box.wait_passes(2, timeout=5)
        after = request(box.config.control.socket, "status", timeout=10)
        zone_1 = switches(box, "zone-1")
    row = next(row for row in box.play_log() if row.item_id == "news")
    assert row.reason == "player stalled: no progress for 3.0 s at 00:00 of 00:30; player restarted"
    assert "FAULT    audio player: player stalled: no progress for 3.0 s" in shown
    assert not any("audio player" in fault for fault in after["faults"])
    failed_at = stamp(row.ended).timestamp()
    (_, closed), (opened_at, still_closed) = zone_1[-2:]
    assert closed and not still_closed
    assert opened_at - failed_at >= 1.0 - 0.05, "relays stay closed for the post-roll after the failure"
    store = Store.open_readonly(box.config.storage.dir)
    try:
        faults = [e for e in store.undelivered_events(1000) if e["kind"] == "player.fault"]
    finally:
        store.close()
    assert len(faults) == 1 and "player stalled" in faults[0]["detail"]
