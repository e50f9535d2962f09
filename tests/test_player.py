"""The player contract, run against every player (null and libVLC), plus the null player's own."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.null_player import NullPlayer
from drivers.player import Player, PlayerEvent, make_player, unreadable
from drivers.wav import wav_duration
from foundation.errors import ConfigError
from tests.audio_fixtures import EventLog, ToneStream, garbage_file, libvlc_missing, tone_file

LIBVLC_MISSING = libvlc_missing()
needs_libvlc = [pytest.mark.vlc, pytest.mark.skipif(bool(LIBVLC_MISSING), reason=LIBVLC_MISSING)]


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture(params=["null", pytest.param("vlc", marks=needs_libvlc)])
def player(request: pytest.FixtureRequest, log: EventLog, tmp_path: Path) -> Iterator[Player]:
    vlc_args = ["--aout=afile", f"--audiofile-file={tmp_path / 'out.wav'}"]
    chosen = make_player(request.param, vlc_args, log)
    chosen.start()
    yield chosen
    chosen.close()


def _assert_order(events: list[PlayerEvent], kinds: list[str]) -> None:
    assert [e.kind for e in events] == kinds
    assert all(a.monotonic <= b.monotonic for a, b in itertools.pairwise(events))


def test_file_plays_to_the_end(player: Player, log: EventLog, tmp_path: Path) -> None:
    player.play("bulletin-1", tone_file(tmp_path, 440, 0.5), 80)
    log.wait_for("bulletin-1", "ended")
    _assert_order(log.of("bulletin-1"), ["playing", "ended"])
    assert player.healthy()


def test_a_repeated_file_is_one_playback_that_lasts_its_repeats(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    player.play("warning", tone_file(tmp_path, 440, 0.5), 80, repeat=3)
    log.wait_for("warning", "ended")
    _assert_order(log.of("warning"), ["playing", "ended"])
    with pytest.raises(ValueError, match="repeat 11"):
        player.play("too-many", tone_file(tmp_path, 440, 0.5), 80, repeat=11)


def test_missing_file_is_an_error_and_the_next_file_plays(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    player.play("missing", tmp_path / "nowhere.wav", 80)
    error = log.wait_final("missing")
    assert error.kind == "error"
    assert "not found" in error.detail and "nowhere.wav" in error.detail
    player.play("next", tone_file(tmp_path, 440, 0.3), 80)
    assert log.wait_final("next").kind == "ended"
    assert log.kinds("missing") == ["error"]


@pytest.mark.parametrize(
    ("make", "what"),
    [(os.mkfifo, "is a FIFO, not an audio file"), (os.mkdir, "is a directory, not an audio file")],
)
def test_a_fifo_or_directory_is_named_as_such_and_never_opened(
    player: Player, log: EventLog, tmp_path: Path, make: object, what: str
) -> None:
    path = tmp_path / "news.wav"
    make(path)  # type: ignore[operator]
    player.play("odd", path, 80)  # opening a FIFO for reading would block until a writer comes
    error = log.wait_final("odd")
    assert (error.kind, error.detail) == ("error", f"{what}: {path}")
    player.play("next", tone_file(tmp_path, 440, 0.3), 80)
    assert log.wait_final("next").kind == "ended"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("bad\0name.wav", "is not a path the system accepts (it holds a NUL character)"),
        ("x" * 300 + ".wav", "cannot be read (File name too long)"),
    ],
)
def test_unreadable_never_raises(tmp_path: Path, name: str, why: str) -> None:
    path = tmp_path / name
    assert unreadable(path).startswith(f"{why}: {tmp_path}")


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.mp3"])
def test_garbage_file_is_an_error(player: Player, log: EventLog, tmp_path: Path, name: str) -> None:
    player.play("garbage", garbage_file(tmp_path, name), 80)
    assert log.wait_final("garbage").kind == "error"
    assert log.kinds("garbage") == ["error"]


def test_play_replaces_the_current_playback(player: Player, log: EventLog, tmp_path: Path) -> None:
    player.play("first", tone_file(tmp_path, 440, 5.0), 80)
    log.wait_for("first", "playing")
    player.play("second", tone_file(tmp_path, 1000, 0.3), 80)
    assert log.wait_final("second").kind == "ended"
    assert log.kinds("first") == ["playing", "stopped"]
    assert "second" in log.of("first")[1].detail
    _assert_order(log.of("second"), ["playing", "ended"])


def test_stop_mid_play_reports_stopped_and_nothing_after(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    player.play("long", tone_file(tmp_path, 440, 5.0), 80)
    log.wait_for("long", "playing")
    player.stop()
    assert log.wait_final("long").kind == "stopped"
    player.play("marker", tone_file(tmp_path, 1000, 0.3), 80)  # commands run in order: a barrier
    log.wait_final("marker")
    assert log.kinds("long") == ["playing", "stopped"]


def test_stop_when_idle_reports_nothing(player: Player, log: EventLog, tmp_path: Path) -> None:
    player.play("short", tone_file(tmp_path, 440, 0.3), 80)
    log.wait_final("short")
    player.stop()
    player.play("marker", tone_file(tmp_path, 1000, 0.3), 80)
    log.wait_final("marker")
    assert log.kinds("short") == ["playing", "ended"]


def test_stream_plays_until_it_ends(player: Player, log: EventLog) -> None:
    stream = ToneStream(1000, 0.5)
    player.play_stream("fm", stream, 70)
    assert log.wait_final("fm").kind == "ended"
    _assert_order(log.of("fm"), ["playing", "ended"])
    assert stream.closed.wait(5.0)  # the player owns the stream and closes it


def test_stop_closes_a_live_stream(player: Player, log: EventLog) -> None:
    stream = ToneStream(1000, None, paced=True)
    player.play_stream("fm", stream, 70)
    log.wait_for("fm", "playing")
    player.stop()
    assert log.wait_final("fm").kind == "stopped"
    assert stream.closed.wait(5.0)


def _wait_staged(player: Player, token: str, path: Path, timeout: float = 10.0) -> None:
    """Wait until the player has prepared ``path`` for ``token`` (libVLC does it on its thread)."""
    deadline = time.monotonic() + timeout
    while getattr(player, "staged", None) != (token, path):
        assert time.monotonic() < deadline, f"{path} was not prepared for {token} within {timeout} s"
        time.sleep(0.005)


def test_prepared_file_plays_to_the_end(player: Player, log: EventLog, tmp_path: Path) -> None:
    path = tone_file(tmp_path, 440, 0.5)
    player.prepare("news", path)
    _wait_staged(player, "news", path)
    assert log.events == []  # preparing posts nothing
    player.play("news", path, 80)
    log.wait_for("news", "ended")
    _assert_order(log.of("news"), ["playing", "ended"])
    assert getattr(player, "staged", None) is None  # used up by its play


def test_prepare_then_play_another_token_plays_that_tokens_file(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    long, short = tone_file(tmp_path, 440, 30.0), tone_file(tmp_path, 1000, 0.3)
    player.prepare("later", long)
    _wait_staged(player, "later", long)
    player.play("now", short, 80)
    assert log.wait_final("now").kind == "ended"  # the short file, not the prepared 30 s one
    assert log.kinds("later") == []
    assert getattr(player, "staged", None) == ("later", long)  # still waiting for its own play
    player.play("later", long, 80)
    log.wait_for("later", "playing")
    player.stop()
    assert log.wait_final("later").kind == "stopped"


def test_prepare_while_playing_leaves_the_playback_alone(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    long, short = tone_file(tmp_path, 440, 5.0), tone_file(tmp_path, 1000, 0.3)
    player.play("long", long, 80)
    log.wait_for("long", "playing")
    player.prepare("next", short)
    _wait_staged(player, "next", short)
    assert log.kinds("long") == ["playing"]
    player.play("next", short, 80)
    assert log.wait_final("next").kind == "ended"
    assert log.kinds("long") == ["playing", "stopped"]


def test_prepared_file_deleted_before_play_is_an_error_and_the_next_file_plays(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    path = tmp_path / "doomed.wav"
    path.write_bytes(tone_file(tmp_path, 440, 0.5).read_bytes())
    player.prepare("doomed", path)
    _wait_staged(player, "doomed", path)
    path.unlink()
    player.play("doomed", path, 80)
    error = log.wait_final("doomed")
    assert error.kind == "error" and "not found" in error.detail
    player.play("next", tone_file(tmp_path, 1000, 0.3), 80)
    assert log.wait_final("next").kind == "ended"
    assert log.kinds("doomed") == ["error"]


def test_a_newer_prepare_replaces_the_older(player: Player, log: EventLog, tmp_path: Path) -> None:
    first, second = tone_file(tmp_path, 440, 0.3), tone_file(tmp_path, 1000, 0.3)
    player.prepare("first", first)
    player.prepare("second", second)
    _wait_staged(player, "second", second)
    player.play("first", first, 80)  # no longer prepared: played as if never prepared
    assert log.wait_final("first").kind == "ended"
    assert getattr(player, "staged", None) == ("second", second)


def test_preparing_a_missing_file_is_reported_by_its_play(
    player: Player, log: EventLog, tmp_path: Path
) -> None:
    player.prepare("missing", tmp_path / "nowhere.wav")
    player.play("missing", tmp_path / "nowhere.wav", 80)
    error = log.wait_final("missing")
    assert error.kind == "error" and "not found" in error.detail


def test_close_twice_is_harmless(player: Player) -> None:
    player.close()
    player.close()
    assert not player.healthy()


def test_volume_outside_range_is_refused(player: Player, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="101"):
        player.play("loud", tone_file(tmp_path, 440, 0.3), 101)


def test_unknown_backend_is_a_config_error(log: EventLog) -> None:
    with pytest.raises(ConfigError, match="'pulse'"):
        make_player("pulse", [], log)


# --- the null player's own behaviour ------------------------------------------------------------


@pytest.fixture
def null_player(log: EventLog) -> Iterator[NullPlayer]:
    chosen = NullPlayer(log)
    chosen.start()
    yield chosen
    chosen.close()


def test_null_player_ends_after_the_files_duration(
    null_player: NullPlayer, log: EventLog, tmp_path: Path
) -> None:
    path = tone_file(tmp_path, 440, 0.4)
    before = time.monotonic()
    null_player.play("t", path, 60)
    ended = log.wait_for("t", "ended")
    assert ended.monotonic - before >= wav_duration(path) - 0.005
    assert [(item.token, item.path, item.volume) for item in null_player.played] == [("t", path, 60)]
    assert before <= null_player.played[0].started <= ended.monotonic


def test_null_player_records_what_was_prepared(
    null_player: NullPlayer, log: EventLog, tmp_path: Path
) -> None:
    first, second = tone_file(tmp_path, 440, 0.2), tone_file(tmp_path, 1000, 0.2)
    null_player.prepare("first", first)
    null_player.play("other", second, 60)
    log.wait_final("other")
    null_player.play("first", first, 60)
    log.wait_final("first")
    assert null_player.prepared == [("first", first)]
    assert [(item.token, item.prepared) for item in null_player.played] == [("other", False), ("first", True)]


def test_null_player_refuses_non_wav(null_player: NullPlayer, log: EventLog, tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3\x03\x00" + bytes(500))
    null_player.play("mp3", path, 60)
    assert "null player plays WAV only" in log.wait_final("mp3").detail
    assert null_player.played == []
