"""Central ``emergency`` and ``play_now`` in the running agent: volume, repeat, pre-emption, their own
lane past a slow download, and what telemetry says of the cache and the mains.

A real Mosquitto, real HTTP servers, the real agent (daemon wiring, store, scheduler, gpiozero's
MockFactory) with the null player, or real libVLC writing a WAV where the repeats show in its length.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.control import request
from drivers.wav_samples import dominant_frequency, read_wav
from protocol.commands import sign_command
from protocol.messages import decode_ack, decode_record
from protocol.topics import Kind
from tests.agent_harness import RunningAgent, at, running_agent, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_finished_wav
from tests.central_stand_in import (
    DEVICE,
    TOPIC,
    Central,
    Http,
    audio,
    claims,
    configure,
    item,
    linked_config,
    manifest,
    row_of,
    wait_linked,
)
from tests.http_stand_in import serving
from tests.mqtt_broker import Broker

ALL_ZONES = ("zone-1", "zone-2")


WavOut = tuple[Path, list[str]]


@pytest.fixture
def wav_out(tmp_path: Path) -> WavOut:
    """Where libVLC writes what the box plays, and the options that say so; skipped without libVLC."""
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "out.wav"
    return out, ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]


@pytest.fixture
def central(broker: Broker) -> Iterator[Central]:
    client = Central(broker.port)
    yield client
    client.close()


@contextmanager
def linked_agent(tmp_path: Path, broker: Broker) -> Iterator[RunningAgent]:
    """The agent on the default schedule, its link to ``broker`` up."""
    with running_agent(linked_config(tmp_path, broker)) as running:
        wait_linked(running)
        yield running


def cache(running: RunningAgent, path: Path) -> str:
    """Put ``path`` in the agent's verified cache; its sha256."""
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    directory = running.config.storage.dir / "audio"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / sha256).write_bytes(data)
    return sha256


def ack_of(central: Central, ident: str, result: str, timeout: float = 10) -> Any:
    _, payload = central.wait(
        lambda t, p: (
            t == f"{TOPIC}/ack" and decode_ack(p).id == ident and decode_ack(p).result.value == result
        ),
        timeout,
    )
    return decode_ack(payload)


def results(central: Central, ident: str) -> list[str]:
    acks = [decode_ack(p) for t, p in central.seen if t == f"{TOPIC}/ack"]
    return [ack.result.value for ack in acks if ack.id == ident]


def test_an_emergency_plays_every_zone_at_its_volume_repeat_times_then_the_volume_returns(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central
) -> None:
    with linked_agent(tmp_path, broker) as running:
        warning = cache(running, tone_file(tmp_path, 880, 0.5))
        news = cache(running, tone_file(tmp_path, 440, 0.3))
        fields = {"audio": {"sha256": warning}, "volume": 35, "repeat": 3}
        central.send(sign_command(claims("cmd-storm", cmd="emergency", **fields), key))
        done = ack_of(central, "cmd-storm", "done")
        assert "3 times" in (done.message or "")
        running.wait_for(lambda: row_of(running, "central-command-cmd-storm").outcome == "completed", 10)
        central.send(sign_command(claims("cmd-after", cmd="play_now", audio={"sha256": news}), key))
        ack_of(central, "cmd-after", "done")
        played = list(running.agent.player.played)  # type: ignore[attr-defined]
    assert results(central, "cmd-storm") == ["accepted", "done"]
    storm, after = played[-2], played[-1]
    assert (storm.volume, storm.repeat, after.volume, after.repeat) == (35, 3, 100, 1)
    row = row_of(running, "central-command-cmd-storm")
    assert (row.level, row.zones, row.audio, row.origin) == ("emergency", ALL_ZONES, warning, "central")
    assert (
        row.actual_start is not None
        and row.ended is not None
        and row.reason.endswith("; played 3 times back to back")
    )
    lasted = (datetime.fromisoformat(row.ended) - datetime.fromisoformat(row.actual_start)).total_seconds()
    assert 1.4 <= lasted < 3.0, "one play-log row for the three plays back to back"
    assert row_of(running, "central-command-cmd-after").audio == news


def test_an_emergency_pre_empts_a_play_now_that_plays_at_its_own_volume(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central
) -> None:
    with linked_agent(tmp_path, broker) as running:
        long = cache(running, tone_file(tmp_path, 330, 8.0))
        warning = cache(running, tone_file(tmp_path, 880, 0.5))
        central.send(sign_command(claims("cmd-news", cmd="play_now", audio={"sha256": long}, volume=70,
                                         zones=["zone-1"]), key))  # fmt: skip
        ack_of(central, "cmd-news", "done")
        central.send(sign_command(claims("cmd-fire", cmd="emergency", audio={"sha256": warning}), key))
        ack_of(central, "cmd-fire", "done")
        running.wait_for(lambda: row_of(running, "central-command-cmd-news").outcome == "interrupted", 5)
        played = list(running.agent.player.played)  # type: ignore[attr-defined]
    assert [(p.volume, p.repeat) for p in played[-2:]] == [(70, 1), (100, 1)]
    assert "pre-empted by emergency" in row_of(running, "central-command-cmd-news").reason


@pytest.mark.vlc
def test_an_emergency_repeated_sounds_its_repeats_in_one_run_with_the_relays_closed_throughout(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central, wav_out: WavOut
) -> None:
    out, args = wav_out
    with running_agent(linked_config(tmp_path, broker, backend="vlc", vlc_args=args)) as running:
        wait_linked(running)
        warning = cache(running, tone_file(tmp_path, 660, 1.5))
        out.unlink(missing_ok=True)  # the warm-up's silence
        central.send(sign_command(claims("cmd-flood", cmd="emergency", audio={"sha256": warning}, repeat=3),
                                  key))  # fmt: skip
        ack_of(central, "cmd-flood", "done")
        relays = running.agent.relays
        opened = []
        deadline = time.monotonic() + 20
        while getattr(row_of(running, "central-command-cmd-flood"), "outcome", None) != "completed":
            assert time.monotonic() < deadline, f"not completed; play log: {running.play_log()}"
            states = relays.states()
            if not all(states.values()):
                opened.append(states)
            time.sleep(0.05)
    assert opened == [], "the relays stay closed from the first play to the end of the last"
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 4.5) < 0.05
    assert abs(dominant_frequency(samples, rate) - 660) < 660 * 0.01


class SlowAudio:
    """Audio downloads that wait until the test releases them: the state of an HTTP server."""

    def __init__(self) -> None:
        self.audio: dict[str, bytes] = {}
        self.release = threading.Event()
        self.asked = threading.Event()
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.asked.set()
                state.release.wait(30)
                body = state.audio.get(self.path.rpartition("/")[2], b"")
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def slow() -> Iterator[SlowAudio]:
    """A ``SlowAudio`` served on a free port; what it holds back is released at the end."""
    state = SlowAudio()
    with serving(state.handler()) as url:
        state.url = url
        yield state
        state.release.set()  # a download still held back ends before the server closes


def test_an_emergency_never_waits_behind_a_play_now_download(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central, slow: SlowAudio
) -> None:
    with linked_agent(tmp_path, broker) as running:
        sha_news, data = audio(tmp_path, 440, 0.5)
        slow.audio[sha_news] = data
        warning = cache(running, tone_file(tmp_path, 880, 0.5))
        ref = {"sha256": sha_news, "url": f"{slow.url}/audio/{sha_news}"}
        central.send(sign_command(claims("cmd-slow", cmd="play_now", audio=ref), key))
        assert slow.asked.wait(10), "the play_now's download began"
        central.send(sign_command(claims("cmd-now", cmd="emergency", audio={"sha256": warning}), key))
        ack_of(central, "cmd-now", "done")
        assert results(central, "cmd-slow") == ["accepted"], "still downloading"
        slow.release.set()
        ack_of(central, "cmd-slow", "done", 15)
    assert row_of(running, "central-command-cmd-now").outcome == "completed"
    assert row_of(running, "central-command-cmd-slow").audio == sha_news


def sample_where(central: Central, check: Any, timeout: float = 15) -> dict[str, Any]:
    """The first telemetry sample the box sent over MQTT that ``check`` accepts."""

    def matches(topic: str, payload: bytes) -> bool:
        return topic == f"{TOPIC}/telemetry" and check(decode_record(Kind.TELEMETRY, payload, DEVICE).data)

    _, payload = central.wait(matches, timeout)
    data: dict[str, Any] = decode_record(Kind.TELEMETRY, payload, DEVICE).data
    return data


def test_telemetry_reports_missing_audio_the_cache_and_the_backup_supply(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    sha_missing, _ = audio(tmp_path, 523.25, 0.5)  # never served
    sha_there, data = audio(tmp_path, 440, 2.0)
    http.audio[sha_there] = data
    http.token = manifest(
        key, "1", item("later", http, sha_missing, at(3600)), item("tonight", http, sha_there, at(7200))
    )
    config = configure(tmp_path, broker, http)
    text = config.read_text(encoding="utf-8").replace(
        "groups: [xa-test]}", "groups: [xa-test], telemetry_interval: 1s}"
    )
    config.write_text(text + "health:\n  mains: {pin: 25}\n", encoding="utf-8")
    with running_agent(config) as running:
        mains = running.agent.health.mains
        assert mains is not None
        sample = sample_where(central, lambda data: data.get("cache_missing") == 1)
        mains._device.pin.drive_high()  # the MockPin the daemon's MockFactory made: mains back
        sample_where(central, lambda data: data.get("on_battery") is False, 10)
    assert sample["on_battery"] is True, "the mains input reads low: on the backup supply"
    assert sample["cache_used_mb"] == len(data) // (1 << 20)


def test_an_item_whose_audio_is_missing_fails_without_closing_its_relays(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey
) -> None:
    sha_missing, _ = audio(tmp_path, 523.25, 0.5)  # never served: every GET is a 404
    sha_there, data = audio(tmp_path, 440, 0.5)
    http.audio[sha_there] = data
    http.token = manifest(
        key, "1", item("no-audio", http, sha_missing, at(4)), item("has-audio", http, sha_there, at(7))
    )
    with running_agent(configure(tmp_path, broker, http, preroll="2s")) as running:
        relays = running.agent.relays
        closed_at: list[str] = []
        deadline = time.monotonic() + 20
        while getattr(row_of(running, "has-audio"), "outcome", None) != "completed":
            assert time.monotonic() < deadline, f"not completed; play log: {running.play_log()}"
            row = row_of(running, "no-audio")
            if any(relays.states().values()):
                closed_at.append(getattr(row, "outcome", "") or "before")
            time.sleep(0.02)
    assert row_of(running, "no-audio").outcome == "failed"
    assert row_of(running, "no-audio").reason == "audio not cached"
    # the relays closed only for the item that could play: after the failed one was logged
    assert closed_at and "before" not in closed_at and set(closed_at) == {"failed"}


def send_fetching(
    tmp_path: Path, slow: SlowAudio, central: Central, key: Ed25519PrivateKey, ident: str, cmd: str
) -> tuple[str, bytes, dict[str, str]]:
    """Send ``cmd`` (play_now or emergency) with audio that only ``slow`` serves; return once the
    box has begun to fetch it: the sha256, the audio and the command's ``audio`` field."""
    sha256, data = audio(tmp_path, 880, 0.5)
    slow.audio[sha256] = data
    ref = {"sha256": sha256, "url": f"{slow.url}/audio/{sha256}"}
    central.send(sign_command(claims(ident, cmd=cmd, audio=ref), key))
    assert slow.asked.wait(10), f"the {cmd}'s download began"
    return sha256, data, ref


def test_a_stop_cancels_a_play_now_still_fetching_its_audio_and_never_waits_for_the_download(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central, slow: SlowAudio
) -> None:
    with linked_agent(tmp_path, broker) as running:
        sha_news, data, _ = send_fetching(tmp_path, slow, central, key, "cmd-slow", "play_now")
        central.send(sign_command(claims("cmd-vol", cmd="set_volume", volume=40), key))
        central.send(sign_command(claims("cmd-hush", cmd="stop"), key))
        assert "volume 40" in (ack_of(central, "cmd-vol", "done", 5).message or "")
        assert ack_of(central, "cmd-hush", "done", 5).message == "nothing was playing"
        assert results(central, "cmd-slow") == ["accepted"], "still downloading"
        slow.release.set()
        cancelled = ack_of(central, "cmd-slow", "rejected", 15)
        cached = running.config.storage.dir / "audio" / sha_news
        running.wait_passes(2, 5)
        played = list(running.agent.player.played)  # type: ignore[attr-defined]
    assert cancelled.reason == "cancelled"
    assert "stop (central command cmd-hush)" in (cancelled.message or "")
    assert row_of(running, "central-command-cmd-slow") is None, "nothing played, nothing logged as played"
    assert played == [] and cached.read_bytes() == data, "the fetched audio stays in the cache"


def test_a_local_stop_cancels_an_emergency_still_fetching_its_audio_but_not_one_that_came_after(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central, slow: SlowAudio
) -> None:
    with linked_agent(tmp_path, broker) as running:
        _, _, ref = send_fetching(tmp_path, slow, central, key, "cmd-false-alarm", "emergency")
        reply = request(running.config.control.socket, "stop")  # the crew at the pole: loa stop
        assert reply["result"] == "done"
        slow.release.set()
        cancelled = ack_of(central, "cmd-false-alarm", "rejected", 15)
        central.send(sign_command(claims("cmd-real-alarm", cmd="emergency", audio=ref), key))
        ack_of(central, "cmd-real-alarm", "done")
    assert cancelled.reason == "cancelled" and "stop (local command" in (cancelled.message or "")
    assert row_of(running, "central-command-cmd-false-alarm") is None
    assert row_of(running, "central-command-cmd-real-alarm").level == "emergency"


@pytest.mark.vlc
def test_a_stop_cancels_the_command_plays_waiting_behind_what_plays_but_not_the_schedule(
    tmp_path: Path, broker: Broker, key: Ed25519PrivateKey, central: Central, wav_out: WavOut
) -> None:
    out, args = wav_out
    config = linked_config(tmp_path, broker, backend="vlc", vlc_args=args)
    # libVLC's afile output runs faster than real time (about 8x here): a long item lasts long enough
    long, weather = tone_file(tmp_path, 330, 60.0), tone_file(tmp_path, 550, 0.8)
    write_schedule(
        tmp_path,
        f"{{id: long, audio: {long.name}, at: '{at(5)}'}}",
        f"{{id: weather, audio: {weather.name}, at: '{at(6)}'}}",
    )
    local: list[dict[str, Any]] = []
    with running_agent(config) as running:
        wait_linked(running)
        wrong = cache(running, tone_file(tmp_path, 880, 0.8))
        crew = tone_file(tmp_path, 990, 0.8)
        running.wait_for(lambda: running.outcome("weather") == "waiting", 15)
        central.send(sign_command(claims("cmd-wrong", cmd="play_now", audio={"sha256": wrong}), key))
        assert ack_of(central, "cmd-wrong", "accepted").result.value == "accepted"
        socket = running.config.control.socket
        crew_play = threading.Thread(
            target=lambda: local.append(request(socket, "play", timeout=10, file=str(crew)))
        )
        crew_play.start()  # the crew's loa play, which waits for its answer
        running.wait_for(lambda: len(running.agent.engine.queue) == 3, 5)
        central.send(sign_command(claims("cmd-hush", cmd="stop"), key))
        stopped = ack_of(central, "cmd-hush", "done")
        cancelled = ack_of(central, "cmd-wrong", "rejected")
        crew_play.join(10)
        running.wait_for(lambda: running.outcome("weather") == "completed", 10)
        running.wait_for(lambda: not any(running.agent.relays.states().values()), 5)
    assert stopped.message == "stopped 'long'; cancelled 2 waiting command plays"
    assert cancelled.reason == "cancelled"
    assert cancelled.message == "cancelled: stop (central command cmd-hush) came while it waited to play"
    [reply] = local
    assert reply["result"] == "rejected" and reply["reason"].startswith("cancelled: stop (central command")
    rows = {row.item_id: row for row in running.play_log()}
    assert rows["long"].outcome == "interrupted"
    assert rows["long"].reason.startswith("stopped by a central command (cmd-hush) after ")
    commands = {"central-command-cmd-wrong": "central", f"local-command-{reply['id']}": "local-command"}
    for item_id, origin in commands.items():
        row = rows[item_id]
        assert (row.outcome, row.origin, row.actual_start) == ("skipped", origin, None)
        assert row.reason == "cancelled: stop (central command cmd-hush) came while it waited to play"
    assert rows["weather"].actual_start is not None, "the schedule's own item played after the stop"
    # libVLC writes each playback afresh: the last is the weather's (it would be the crew's tone,
    # which queued after it, had the stop not cancelled the command plays)
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 0.8) < 0.05
    assert abs(dominant_frequency(samples, rate) - 550) < 550 * 0.01
