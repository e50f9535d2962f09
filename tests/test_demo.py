"""The demo keeps every playback libVLC's afile output writes, though that file is reopened for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.demo import PlaybackFiles
from drivers.player import make_player
from drivers.wav_samples import dominant_frequency, read_wav
from tests.audio_fixtures import (
    RATE,
    EventLog,
    libvlc_missing,
    tone_file,
    wait_for_audio_written,
    wait_for_finished_wav,
)


@pytest.mark.vlc
def test_every_playback_is_kept_in_its_own_file(tmp_path: Path) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    out, played = tmp_path / "output.wav", tmp_path / "played"
    log = EventLog()
    playbacks = PlaybackFiles(out, played)
    playbacks.start()
    player = make_player("vlc", ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"], log)
    player.start()
    playbacks.forget_warm_up()  # the player's silent warm-up is not a playback
    try:
        player.play("bulletin", tone_file(tmp_path, 440, 5.0), 100)
        wait_for_audio_written(played / "01.wav", RATE * 2 // 2)  # half a second, kept already
        player.play("warning", tone_file(tmp_path, 880, 0.5), 100)  # replaces it, as a pre-emption does
        assert log.wait_final("warning").kind == "ended"
    finally:
        player.close()
        playbacks.stop()
    assert playbacks.files == [played / "01.wav", played / "02.wav"]
    assert not out.exists()
    for path, frequency, seconds in zip(playbacks.files, (440, 880), (None, 0.5), strict=True):
        wait_for_finished_wav(path)
        samples, rate = read_wav(path)
        assert dominant_frequency(samples, rate) == pytest.approx(frequency, rel=0.01)
        if seconds is None:  # cut short by the next playback
            assert 0.5 <= len(samples) / rate < 5.0
        else:
            assert abs(len(samples) / rate - seconds) < 0.05
