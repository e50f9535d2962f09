"""The libVLC player against real libVLC, checking the sound it writes.

libVLC's afile output (``--aout=afile --audiofile-file=OUT.wav``), as found with libVLC 3.0.24:

* it truncates OUT.wav when an audio output starts, i.e. at every playback, and patches the WAV
  header's sizes when that playback's output closes; so OUT.wav holds only the latest playback,
  complete once its header is patched (:func:`wait_for_finished_wav`);
* it is clocked like a sound card but takes the first ~1 s of audio at once (the decoder's lead),
  so a 1.5 s file is written in about 0.5 s and a 20 s file in about 19 s;
* it has no volume control: ``audio_set_volume`` is ignored.  The volume test therefore uses the
  ALSA output (as on a Pi) into ALSA's ``file`` PCM, where VLC applies its software volume.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers.playback_watch import StallLimits
from drivers.player import make_player
from drivers.vlc_player import VlcPlayer
from drivers.wav_samples import dominant_frequency, read_wav, rms
from foundation.errors import PlayerError
from tests.audio_fixtures import (
    EventLog,
    StuckStream,
    ToneStream,
    encoded_tone,
    garbage_file,
    libvlc_missing,
    tone_file,
    wait_for_audio_written,
    wait_for_finished_wav,
)

LIBVLC_MISSING = libvlc_missing()
pytestmark = [pytest.mark.vlc, pytest.mark.skipif(bool(LIBVLC_MISSING), reason=LIBVLC_MISSING)]


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out.wav"


def _started(player: VlcPlayer) -> Iterator[VlcPlayer]:
    player.start()
    yield player
    player.close()


@pytest.fixture
def player(log: EventLog, out: Path) -> Iterator[VlcPlayer]:
    yield from _started(VlcPlayer(["--aout=afile", f"--audiofile-file={out}"], log))


def _play_and_read(
    player: VlcPlayer, log: EventLog, out: Path, token: str, path: Path, repeat: int = 1
) -> np.ndarray:
    # "ended" can come before libVLC has reopened OUT.wav for this playback: without the old file
    # a finished OUT.wav can only be this playback's.
    out.unlink(missing_ok=True)
    player.play(token, path, 100, repeat)
    assert log.wait_final(token).kind == "ended"
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert rate == 44100
    return samples


@pytest.mark.parametrize("frequency", [440.0, 1000.0])
def test_output_has_the_files_pitch_and_length(
    player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path, frequency: float
) -> None:
    samples = _play_and_read(player, log, out, "tone", tone_file(tmp_path, frequency, 1.5))
    assert abs(len(samples) / 44100 - 1.5) <= 0.050
    assert dominant_frequency(samples, 44100) == pytest.approx(frequency, rel=0.01)


@pytest.mark.parametrize("kind", ["mp3", "ogg"])
def test_an_mp3_or_ogg_bulletin_plays_at_its_pitch_and_length(
    player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path, kind: str
) -> None:
    samples = _play_and_read(player, log, out, kind, encoded_tone(tmp_path, 660, 2.0, kind))
    # an MP3 encoder adds a frame or two of padding at each end (26 ms each at 44.1 kHz)
    assert abs(len(samples) / 44100 - 2.0) <= 0.080, f"{len(samples) / 44100:.3f} s"
    assert dominant_frequency(samples, 44100) == pytest.approx(660, rel=0.01)
    assert log.kinds(kind) == ["playing", "ended"]


@pytest.mark.parametrize("prepared", [False, True])
def test_a_repeated_file_sounds_its_repeats_back_to_back(
    player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path, prepared: bool
) -> None:
    tone = tone_file(tmp_path, 660, 1.5)
    if prepared:  # nothing plays: the prepared media is loaded, and still takes the repeat
        player.prepare("warning", tone)
        _staged(player, "warning", tone)
    samples = _play_and_read(player, log, out, "warning", tone, repeat=3)
    assert abs(len(samples) / 44100 - 4.5) <= 0.050
    assert dominant_frequency(samples, 44100) == pytest.approx(660, rel=0.01)
    assert log.kinds("warning") == ["playing", "ended"] and player.healthy()


def test_the_supervisor_counts_every_repeat_in_a_playbacks_length(
    log: EventLog, out: Path, tmp_path: Path
) -> None:
    """Played past one pass of its media is no stall for a repeated file (afile writes ~1.5x
    faster than real time: 9 s of audio take about 6 s, twice the one pass the media lasts)."""
    limits = StallLimits(overrun=0.0)
    for player in _started(VlcPlayer(["--aout=afile", f"--audiofile-file={out}"], log, limits=limits)):
        started = time.monotonic()
        player.play("repeated", tone_file(tmp_path, 440, 3.0), 100, repeat=3)
        final = log.wait_final("repeated", 20)
        assert time.monotonic() - started > 3.0 + 0.5, "it played well past one pass"
        assert (final.kind, final.fault, player.restarts) == ("ended", False, 0)


def test_afile_output_is_rewritten_for_each_playback(
    player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path
) -> None:
    _play_and_read(player, log, out, "first", tone_file(tmp_path, 440, 1.5))
    samples = _play_and_read(player, log, out, "second", tone_file(tmp_path, 1000, 0.5))
    assert abs(len(samples) / 44100 - 0.5) <= 0.050
    assert dominant_frequency(samples, 44100) == pytest.approx(1000, rel=0.01)


def _staged(player: VlcPlayer, token: str, path: Path) -> None:
    deadline = time.monotonic() + 10
    while player.staged != (token, path):
        assert time.monotonic() < deadline, f"{path} was not prepared"
        time.sleep(0.005)


def test_prepared_files_reach_the_output_whichever_token_plays_first(
    player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path
) -> None:
    low, high = tone_file(tmp_path, 440, 1.0), tone_file(tmp_path, 1000, 0.5)
    player.prepare("low", low)  # nothing plays: libVLC loads it at once
    _staged(player, "low", low)
    samples = _play_and_read(player, log, out, "high", high)
    assert dominant_frequency(samples, 44100) == pytest.approx(1000, rel=0.01)
    samples = _play_and_read(player, log, out, "low", low)  # prepared, but no longer loaded
    assert abs(len(samples) / 44100 - 1.0) <= 0.050
    assert dominant_frequency(samples, 44100) == pytest.approx(440, rel=0.01)
    player.prepare("high", high)
    _staged(player, "high", high)
    samples = _play_and_read(player, log, out, "high", high)  # loaded: the start is only play()
    assert abs(len(samples) / 44100 - 0.5) <= 0.050
    assert dominant_frequency(samples, 44100) == pytest.approx(1000, rel=0.01)


def test_start_measures_the_start_latency_with_a_silent_warm_up(player: VlcPlayer, log: EventLog) -> None:
    assert player.start_latency is not None and player.start_latency > 0
    assert log.events == []  # the warm-up is nobody's playback


def test_stream_tone_reaches_the_output(player: VlcPlayer, log: EventLog, out: Path) -> None:
    player.play_stream("fm", ToneStream(1000, 1.5, rate=48000), 100)
    assert log.wait_final("fm").kind == "ended"
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert rate == 48000
    # libVLC sometimes drops the stream's last 50 ms block at its end (never the first).
    assert 1.5 - 0.060 <= len(samples) / rate <= 1.5 + 0.010
    assert dominant_frequency(samples, rate) == pytest.approx(1000, rel=0.01)


def test_stop_mid_play_cuts_the_output(player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path) -> None:
    player.play("long", tone_file(tmp_path, 440, 20.0), 100)
    log.wait_for("long", "playing")
    wait_for_audio_written(out, 44100 * 2)  # a second of audio: the output is open and writing
    player.stop()
    assert log.wait_final("long").kind == "stopped"
    wait_for_finished_wav(out)
    samples, _ = read_wav(out)
    assert 0 < len(samples) / 44100 < 10.0


def test_afile_ignores_volume(player: VlcPlayer, log: EventLog, out: Path, tmp_path: Path) -> None:
    path = tone_file(tmp_path, 440, 0.5)
    loud = rms(_play_and_read(player, log, out, "loud", path))
    player.play("quiet", path, 50)
    log.wait_final("quiet")
    wait_for_finished_wav(out)
    assert rms(read_wav(out)[0]) == pytest.approx(loud, rel=0.01)


def _alsa_peak(log: EventLog, tmp_path: Path, volume: int) -> float:
    out = tmp_path / f"alsa-{volume}.wav"
    args = ["--aout=alsa", f"--alsa-audio-device=file:'{out}',wav"]
    for player in _started(VlcPlayer(args, log)):
        player.play(f"v{volume}", tone_file(tmp_path, 440, 0.5), volume)
        assert log.wait_final(f"v{volume}").kind == "ended"
    samples, _ = read_wav(out)  # ALSA pads with silence (its file PCM is not clocked): use the peak
    return float(np.max(np.abs(samples)))


def test_volume_scales_the_samples_through_alsa(log: EventLog, tmp_path: Path) -> None:
    full, half = _alsa_peak(log, tmp_path, 100), _alsa_peak(log, tmp_path, 50)
    assert full == pytest.approx(0.5, rel=0.05)
    # VLC's software volume is cubic: 50 % is 0.125 in amplitude (-18 dB).
    assert half / full == pytest.approx(0.125, rel=0.1)


@pytest.mark.parametrize("name", ["noise.mp3", "noise.wav", "noise.ogg"])
def test_corrupt_file_is_an_error_without_playing(
    player: VlcPlayer, log: EventLog, tmp_path: Path, name: str
) -> None:
    player.play("bad", garbage_file(tmp_path, name), 100)
    error = log.wait_final("bad")
    assert error.kind == "error"
    assert "no audio" in error.detail or "could not" in error.detail
    assert log.kinds("bad") == ["error"]


def test_empty_and_text_files_are_errors(player: VlcPlayer, log: EventLog, tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.mp3").write_text("not audio at all\n")
    player.play("empty", tmp_path / "empty.wav", 100)
    player.play("text", tmp_path / "notes.mp3", 100)
    assert "empty" in log.wait_final("empty").detail
    assert log.wait_final("text").kind == "error"


def test_quick_replacements_are_attributed_to_the_right_token(
    player: VlcPlayer, log: EventLog, tmp_path: Path
) -> None:
    # Replace short files at varying moments, so that some are replaced before they play, some
    # while playing and some just as they end: each token still gets one consistent story.
    tokens = [f"item-{n}" for n in range(8)]
    for n, token in enumerate(tokens):
        player.play(token, tone_file(tmp_path, 440, 0.3), 100)
        time.sleep(0.03 * n)
    assert log.wait_final(tokens[-1]).kind == "ended"
    allowed = (["stopped"], ["playing", "stopped"], ["playing", "ended"])
    assert all(log.kinds(token) in allowed for token in tokens), log.events
    assert log.kinds(tokens[-1]) == ["playing", "ended"]


def test_hung_libvlc_is_restarted(log: EventLog, out: Path, tmp_path: Path) -> None:
    for player in _started(VlcPlayer(["--aout=afile", f"--audiofile-file={out}"], log, command_timeout=1.0)):
        stuck = StuckStream()
        player.play_stream("stuck", stuck, 100)
        assert stuck.reading.wait(5.0)
        player.stop()  # libVLC's stop() now waits for the read that never returns
        error = log.wait_final("stuck")
        assert error.kind == "error" and "restarted" in error.detail
        assert not player.healthy()
        player.play("after", tone_file(tmp_path, 440, 0.3), 100)
        assert log.wait_final("after").kind == "ended"
        assert player.healthy() and player.restarts == 1
        stuck.release.set()


def test_invalid_arguments_fail_start(log: EventLog) -> None:
    with pytest.raises(PlayerError, match="vlc-plugin-base"):
        VlcPlayer(["--no-such-option-anywhere"], log).start()


def test_missing_libvlc_fails_start(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vlc", None)  # makes `import vlc` raise ImportError
    with pytest.raises(PlayerError, match="libVLC not found: apt install vlc-bin"):
        VlcPlayer([], log).start()


def test_play_before_start_is_refused(log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(PlayerError, match="not started"):
        make_player("vlc", [], log).play("x", tone_file(tmp_path, 440, 0.3), 50)
