"""Schedule manifests and the audio cache in the running agent, end to end.

A real Mosquitto (the retained notice, commands), a real HTTP server (the manifest with its ETag,
the audio), the real agent (daemon wiring, store, scheduler; null player or real libVLC).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.central_sync import NOT_CACHED
from agent.config import load_config
from agent.status import offline_status, render
from agent.store import Store
from drivers.wav_samples import dominant_frequency, read_wav
from protocol.commands import sign_command
from protocol.manifest import ManifestNotice
from protocol.messages import decode_ack
from tests.agent_harness import RunningAgent, at, running_agent, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_finished_wav
from tests.central_stand_in import (
    DEVICE,
    TOPIC,
    Http,
    audio,
    configure,
    item,
    manifest,
    ref,
    row_of,
    wait_linked,
)
from tests.mqtt_broker import Broker
from tests.test_storage_faults import remount, tmpfs

REPO = Path(__file__).resolve().parent.parent


class Central:
    """The central server's MQTT side: retained notices, commands, and what the box sends."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="test-central", protocol=mqtt.MQTTv311
        )
        self.client.on_message = lambda _c, _u, m: self.seen.append((m.topic, bytes(m.payload)))
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def notice(self, version: str, topic: str = f"{TOPIC}/manifest") -> None:
        self.client.publish(topic, ManifestNotice(version).to_json(), qos=1, retain=True).wait_for_publish(5)

    def send(self, token: str) -> None:
        self.client.publish(f"{TOPIC}/cmd", token, qos=1).wait_for_publish(5)

    def acks(self, ident: str) -> list[tuple[str, str | None]]:
        found = [decode_ack(p) for t, p in list(self.seen) if t == f"{TOPIC}/ack"]
        return [(ack.result.value, ack.reason) for ack in found if ack.id == ident]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def events(running: RunningAgent, kind: str) -> list[str]:
    store = Store.open_readonly(running.config.storage.dir)
    try:
        newest_first = store.recent_events(500)
        return [str(row["detail"]) for row in reversed(newest_first) if row["kind"] == kind]
    finally:
        store.close()


def seconds_between(first: str, second: str) -> float:
    return (datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds()


@pytest.fixture
def central(broker: Broker) -> Iterator[Central]:
    client = Central(broker.port)
    yield client
    client.close()


@pytest.mark.vlc
def test_a_manifest_announced_by_the_retained_notice_plays_its_item_at_the_second(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    sha256, data = audio(tmp_path, 523.25, 1.5)
    http.audio[sha256] = data
    out = tmp_path / "out.wav"
    args = ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]
    with running_agent(configure(tmp_path, broker, http, backend="vlc", vlc_args=args)) as running:
        running.wait_for(lambda: http.manifest_gets() == 1, 10)  # at start: 404, nothing served yet
        http.token = manifest(key, "1", item("central-news", http, sha256, at(6), priority="priority"))
        central.notice("1")  # the poll is an hour away: only the notice can bring it
        running.wait_for(lambda: row_of(running, "central-news") is not None, 12)
        running.wait_for(lambda: row_of(running, "central-news").outcome == "completed", 10)
        assert running.agent.schedule.status()["origins"]["central"]["version"] == "1"
        assert http.audio_gets(sha256) == 1 and http.manifest_gets() == 2
        status = running.agent.status()
    row = row_of(running, "central-news")
    assert (row.audio, row.origin, row.level) == (sha256, "central", "priority")
    assert abs(seconds_between(row.scheduled_start, row.actual_start)) < 0.1
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 1.5) < 0.05
    assert abs(dominant_frequency(samples, rate) - 523.25) < 523.25 * 0.01
    cache = status["central"]["cache"]
    assert status["central"]["manifest"]["version"] == "1"
    assert (cache["bytes"], cache["quota"]) == (len(data), 2_000_000_000)


def test_audio_that_cannot_be_downloaded_fails_its_item_with_audio_not_cached_and_warns_ahead(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey
) -> None:
    sha256, _ = audio(tmp_path)  # never served: every GET is a 404
    http.token = manifest(key, "1", item("central-news", http, sha256, at(5)))
    with running_agent(configure(tmp_path, broker, http)) as running:
        running.wait_for(lambda: getattr(row_of(running, "central-news"), "outcome", None) == "failed", 12)
        row = row_of(running, "central-news")
        assert row.reason == NOT_CACHED and row.actual_start is None
        late = events(running, "audio.late")
        failed = events(running, "audio.download_failed")
        status = running.agent.status()
        played = list(running.agent.player.played)  # type: ignore[attr-defined]
    assert played == []  # the player never saw it: what the box did (here, silence) went on
    assert len(late) == 1 and "central-news" in late[0] and sha256 in late[0]
    assert len(failed) == 1 and "HTTP 404" in failed[0]
    text = render(status, running.config.device.timezone)
    assert "cache    0 of 1 items in the next 7d ready, 1 MISSING (central-news)" in text
    assert "manifest version 1, 1 items (checked " in text and "; every 1h)" in text


def test_a_corrupted_cached_file_is_not_played_and_is_fetched_again(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    sha256, data = audio(tmp_path)
    http.audio[sha256] = data
    http.token = manifest(key, "1", item("first", http, sha256, at(4)), item("second", http, sha256, at(9)))
    with running_agent(configure(tmp_path, broker, http)) as running:
        cached = running.config.storage.dir / "audio" / sha256
        running.wait_for(lambda: cached.is_file() and row_of(running, "first") is not None, 10)
        running.wait_for(lambda: row_of(running, "first").outcome == "completed", 10)
        cached.write_bytes(b"\0" * len(data))  # a bad block, same size: only the hash can tell
        running.wait_for(lambda: getattr(row_of(running, "second"), "outcome", None) == "failed", 12)
        assert row_of(running, "second").reason == NOT_CACHED
        running.wait_for(lambda: http.audio_gets(sha256) == 2 and cached.is_file(), 10)
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256
        running.wait_for(lambda: len(events(running, "audio.corrupt")) == 1, 10)
        assert running.agent.central is not None and running.agent.central.cache.corrupt_deleted == 1


def test_a_full_cache_evicts_what_no_coming_item_needs_and_keeps_what_one_does(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey
) -> None:
    needed, data = audio(tmp_path, 440, 40.0)  # 3.5 MB each: two of them and the old file overflow 10MB
    later, later_data = audio(tmp_path, 660, 40.0)
    http.audio |= {needed: data, later: later_data}
    old = os.urandom(len(data))
    old_sha = hashlib.sha256(old).hexdigest()
    cache = tmp_path / "state" / "audio"
    cache.mkdir(parents=True)
    (cache / old_sha).write_bytes(old)  # cached long ago, for an item no longer scheduled
    os.utime(cache / old_sha, (time.time() - 86400, time.time() - 86400))
    http.token = manifest(
        key, "1", item("soon", http, needed, at(3600)), item("in-six-days", http, later, at(6 * 86400))
    )
    with running_agent(configure(tmp_path, broker, http, extra_storage="cache_max: 10MB")) as running:
        running.wait_for(lambda: (cache / needed).is_file() and (cache / later).is_file(), 15)
        running.wait_for(lambda: not (cache / old_sha).exists(), 10)
        assert running.agent.central is not None
        running.wait_for(lambda: running.agent.central.status()["cache"].get("ready") == 2, 10)
        assert running.agent.central.status()["cache"]["bytes"] == 2 * len(data)


def test_a_manifest_is_not_put_in_force_in_the_seconds_before_a_start(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey
) -> None:
    sha256, data = audio(tmp_path)
    http.audio[sha256] = data
    http.token = manifest(key, "1", item("central-1", http, sha256, at(3600)))
    config = configure(tmp_path, broker, http)
    tone = tone_file(tmp_path, 330, 0.5).name
    write_schedule(tmp_path, f"{{id: local-soon, audio: {tone}, at: '{at(2.5)}'}}")
    with running_agent(config) as running:
        origins = lambda: running.agent.schedule.status()["origins"]  # noqa: E731
        running.wait_for(lambda: "central" in origins() and origins()["central"]["version"] == "1", 10)
        in_force_at = datetime.now(UTC)
        running.wait_for(lambda: row_of(running, "local-soon") is not None, 5)
        local = row_of(running, "local-soon")
    # the manifest came at once (the fetch at start), but waited until the local item had started
    assert http.manifest_answers[0][1] == 200
    assert in_force_at >= datetime.fromisoformat(local.scheduled_start)
    assert local.outcome in ("playing", "completed")


def test_on_a_read_only_card_a_new_manifest_plays_from_the_cache_and_what_is_not_cached_fails(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    cached, data = audio(tmp_path)
    other, other_data = audio(tmp_path, 880)
    http.audio |= {cached: data, other: other_data}
    http.token = manifest(key, "1", item("first", http, cached, at(3600)))
    config = configure(tmp_path, broker, http)
    with tmpfs(tmp_path / "state", "16M") as state:
        with running_agent(config) as running:  # a first run caches the audio
            running.wait_for(lambda: (state / "audio" / cached).is_file(), 10)
        remount(state, "ro")
        http.token = manifest(
            key, "2", item("from-cache", http, cached, at(5)), item("not-cached", http, other, at(6))
        )
        with running_agent(config) as running:
            agent = running.agent
            assert agent.store.fault is not None and "read-only" in agent.store.fault
            player = agent.player
            played = lambda: [entry.token.split("@")[0] for entry in player.played]  # type: ignore[attr-defined]  # noqa: E731
            running.wait_for(lambda: agent.schedule.status()["origins"]["central"]["version"] == "2", 10)
            running.wait_for(lambda: "from-cache" in played(), 12)
            running.wait_for(lambda: any("not-cached@" in r.getMessage() and NOT_CACHED in r.getMessage()
                                         for r in caplog.records), 10)  # fmt: skip
            assert played() == ["from-cache"]
            assert agent.central is not None and agent.central.status()["cache"]["missing"] == 1
        remount(state, "rw")


def test_a_refused_manifest_keeps_the_last_good_one_and_the_local_items(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    sha256, data = audio(tmp_path)
    http.audio[sha256] = data
    http.token = manifest(key, "1", item("central-1", http, sha256, at(3600)))
    with running_agent(configure(tmp_path, broker, http)) as running:
        origins = lambda: running.agent.schedule.status()["origins"]  # noqa: E731
        running.wait_for(lambda: "central" in origins() and origins()["central"]["version"] == "1", 10)
        http.token = manifest(Ed25519PrivateKey.generate(), "2", item("central-2", http, sha256, at(3600)))
        central.notice("2")
        running.wait_for(lambda: len(events(running, "schedule.refused")) == 1, 10)
        bad = manifest(key, "3", item("central-3", http, sha256, at(3600), zones=["zone-9"]))
        http.token = bad
        central.notice("3", topic="loa/v1/group/xa-test/manifest")  # a notice to the box's group
        running.wait_for(lambda: len(events(running, "schedule.refused")) == 2, 10)
        refused = events(running, "schedule.refused")
        assert "bad_signature" in refused[0] and "bad_items" in refused[1] and "zone-9" in refused[1]
        assert {i.id for i in running.agent.schedule.items} == {"local-1", "central-1"}
        assert origins()["central"]["version"] == "1"


def test_the_poll_asks_with_the_etag_and_an_unchanged_manifest_costs_a_304(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey
) -> None:
    sha256, data = audio(tmp_path)
    http.audio[sha256] = data
    http.token = manifest(key, "5", item("central-1", http, sha256, at(3600)))
    with running_agent(configure(tmp_path, broker, http, poll="10s")) as running:
        running.wait_for(lambda: len(http.manifest_answers) == 2, 15)  # at start, then one poll later
        first, second = http.manifest_answers
        assert first == (None, 200)  # a new box has no ETag yet
        assert second[0] is not None and second[1] == 304  # the ETag of the first answer: unchanged
        assert running.agent.schedule.status()["origins"]["central"]["version"] == "5"
        assert events(running, "schedule.refused") == [] and events(running, "manifest.fetch_failed") == []


def test_sync_now_fetches_the_manifest_and_play_now_fetches_its_audio_or_is_rejected(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    sha256, data = audio(tmp_path)
    other, _ = audio(tmp_path, 880)
    http.audio[sha256] = data
    http.audio[other] = data  # served under the wrong name: its hash will not match
    now = int(time.time())

    def command(jti: str, cmd: str, **fields: Any) -> str:
        return sign_command(
            {"jti": jti, "aud": DEVICE, "iat": now, "exp": now + 600, "cmd": cmd, **fields}, key
        )

    with running_agent(configure(tmp_path, broker, http)) as running:
        wait_linked(running)
        running.wait_for(lambda: http.manifest_gets() == 1, 10)
        http.token = manifest(key, "4", item("central-1", http, sha256, at(3600)))
        central.send(command("sync-1", "sync_now"))
        running.wait_for(lambda: running.agent.schedule.status()["origins"]["central"]["version"] == "4", 10)
        assert central.acks("sync-1")[-1] == ("done", None)

        central.send(command("wrong-hash", "play_now", audio=ref(http, other)))
        missing = "cd" * 32
        central.send(command("no-file", "play_now", audio=ref(http, missing)))
        running.wait_for(lambda: len(central.acks("no-file")) == 2, 10)
        assert central.acks("wrong-hash") == [("accepted", None), ("rejected", "audio_corrupt")]
        assert central.acks("no-file") == [("accepted", None), ("rejected", "audio_fetch_failed")]
        assert not (running.config.storage.dir / "audio" / other).exists()

        running.wait_for(lambda: (running.config.storage.dir / "audio" / sha256).is_file(), 10)
        fetched = http.audio_gets(sha256)
        http.audio.clear()  # the cached file plays at once, the URL is not asked again
        central.send(command("cached", "emergency", audio=ref(http, sha256)))
        running.wait_for(lambda: ("done", None) in central.acks("cached"), 10)
        assert http.audio_gets(sha256) == fetched
        plays = [row for row in running.play_log() if row.origin == "central"]
        assert [row.item_id for row in plays] == ["central-command-cached"]


@pytest.mark.slow
def test_kill_9_while_a_manifest_is_put_in_force_leaves_the_old_or_the_new_one_wholly(
    tmp_path: Path, broker: Broker, http: Http, key: Ed25519PrivateKey, central: Central
) -> None:
    sha256, data = audio(tmp_path)
    http.audio[sha256] = data
    config = configure(tmp_path, broker, http)
    storage = tmp_path / "state"
    sizes = {"1": 2000, "2": 3000, "3": 2500, "4": 3500}

    def items_of(version: str) -> list[dict[str, Any]]:
        start = at(7 * 86400)
        return [item(f"v{version}-{n}", http, sha256, start) for n in range(sizes[version])]

    log = tmp_path / "agent.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    http.token = manifest(key, "1", *items_of("1"))
    served = "1"
    for version, delay in (("2", 0.0), ("3", 0.02), ("4", 0.05)):
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "agent.daemon", "--config", str(config), "run"],
                stdout=out, stderr=out, env=env, cwd=tmp_path,
            )  # fmt: skip
        try:
            # what the server serves is in force first (taken at start if the last kill came early)
            _wait(lambda served=served: _stored(storage)[0] == served, 30, log)
            http.token = manifest(key, version, *items_of(version))
            central.notice(version)
            line = f"putting manifest {version} in force"
            _wait(lambda line=line: line in log.read_text(errors="replace"), 30, log)
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        stored_version, ids = _stored(storage)
        assert stored_version in {served, version}
        assert ids == {entry["id"] for entry in items_of(stored_version)}  # wholly one of them
        served = version

    store = Store.open_readonly(storage)
    try:  # loa status without the agent shows the manifest in force
        offline = offline_status(load_config(config), store, datetime.now(UTC))
    finally:
        store.close()
    assert offline["schedule"]["origins"]["central"]["version"] == _stored(storage)[0]
    with running_agent(config) as running:
        running.wait_for(lambda: running.agent.schedule.status()["origins"]["central"]["version"] == "4", 15)
        assert len([i for i in running.agent.schedule.items if i.id.startswith("v4-")]) == sizes["4"]


def _stored(storage: Path) -> tuple[str | None, set[str]]:
    store = Store.open_readonly(storage)
    try:
        meta = store.schedule_origin("central")
        ids = {str(spec["id"]) for spec in store.schedule_specs("central")}
    finally:
        store.close()
    assert meta.get("items", 0) == len(ids)
    return meta.get("version"), ids


def _wait(what: Any, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if what():
                return
        except Exception:  # the store may not exist yet
            pass
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s; agent log:\n{log.read_text(errors='replace')[-3000:]}")
