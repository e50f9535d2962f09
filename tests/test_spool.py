"""The spool through an outage (agent/spool_policy.py, docs/PROTOCOL.md "The spool"): telemetry is
thinned by the rule as it grows, the play log and security events are never dropped, and after
reconnecting to a real Mosquitto every spooled record arrives in order, exactly once."""

from __future__ import annotations

import collections
import queue
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from agent.events import EventKind
from agent.runtime import Reload
from agent.spool_policy import SPOOL_POLICY, SpoolPolicy, thin_telemetry
from agent.store import Store
from protocol.messages import decode_record
from protocol.topics import Kind
from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.mqtt_broker import MOSQUITTO, Broker
from tests.test_outbox import play

START = datetime(2026, 11, 1, tzinfo=UTC)


def waiting(store: Store) -> list[dict[str, Any]]:
    return store.undelivered_telemetry(1_000_000)


def epochs(rows: list[dict[str, Any]]) -> list[int]:
    return [int(datetime.fromisoformat(row["at"]).timestamp()) for row in rows]


def check_rule(rows: list[dict[str, Any]], policy: SpoolPolicy, every: int) -> None:
    """What is left obeys the policy: whole detail in the last day, one per 15 min, then one per hour."""
    times = epochs(rows)
    newest = times[-1]
    day, week = int(policy.thin_after.total_seconds()), int(policy.thin_more_after.total_seconds())
    recent = [t for t in times if t >= newest - day]
    assert recent == list(range(recent[0], newest + 1, every)), "the last day is kept whole"
    for low, high, width in ((newest - week, newest - day, 900), (None, newest - week, 3600)):
        old = [t for t in times if (low is None or t >= low) and t < high]
        buckets = collections.Counter(t // width for t in old)
        assert old and max(buckets.values()) == 1, f"at most one sample per {width} s"
        span = high - (low if low is not None else old[0])
        assert len(buckets) >= span // width - 1, "one sample kept per period"


def test_a_long_outage_thins_telemetry_by_the_rule_and_keeps_every_play_and_security_event(
    tmp_path: Path,
) -> None:
    """Ten days without the broker, a sample every four minutes (3,600 samples), with the
    documented policy; the agent's other records keep coming."""
    store = Store.open(tmp_path)
    every, plays, security, ordinary = 240, [], [], []
    for index in range(10 * 24 * 15):
        moment = START + timedelta(seconds=index * every)
        store.add_telemetry(moment, {"uptime_s": index * every, "load_1m": 0.5})
        if index % 120 == 0:  # every 8 hours a bulletin, a forged command, an ordinary event
            store.record_play(play(f"news@{index}", start=moment))
            plays.append(f"news@{index}")
            security.append(store.add_event(EventKind.COMMAND_REFUSED, f"forged {index}"))
            ordinary.append(store.add_event(EventKind.COMMAND, f"stop {index}"))
    rows = waiting(store)
    # a day whole (361), six days at one per 15 min (576), three at one per hour (72)
    assert 1_000 <= len(rows) <= 1_012 < SPOOL_POLICY.max_samples
    check_rule(rows, SPOOL_POLICY, every)
    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(seqs) and seqs[-1] == 3_600, "ids only grow; gaps are the thinning"
    with store.db.conn:
        assert thin_telemetry(store.db.conn, 0, whole=True) == 0, "sample by sample thins it all"
    assert [record.key for _, record in store.undelivered_plays(10_000)] == plays
    events = store.undelivered_events(10_000)
    assert [row["seq"] for row in events] == sorted(security + ordinary)
    store.close()


def test_past_the_cap_the_oldest_samples_go_and_delivered_ones_are_kept_few(tmp_path: Path) -> None:
    policy = SpoolPolicy(max_samples=30, keep_delivered=5)
    store = Store.open(tmp_path)
    for index in range(100):  # an hour apart: all past the thinning, one per period
        store.add_telemetry(START + timedelta(hours=index), {"uptime_s": index}, policy)
    rows = waiting(store)
    assert [row["data"]["uptime_s"] for row in rows] == list(range(70, 100))
    store.mark_delivered("telemetry", rows[-1]["seq"])
    store.add_telemetry(START + timedelta(hours=100), {"uptime_s": 100}, policy)
    assert [row["data"]["uptime_s"] for row in waiting(store)] == [100]
    kept = store.db.conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
    assert kept == 5 + 1
    store.close()


def at_most_one_per_period(times: list[int], policy: SpoolPolicy) -> None:
    day, week = int(policy.thin_after.total_seconds()), int(policy.thin_more_after.total_seconds())
    coarse, coarser = int(policy.coarse.total_seconds()), int(policy.coarser.total_seconds())
    newest = max(times)
    middle = collections.Counter(t // coarse for t in times if newest - week <= t < newest - day)
    old = collections.Counter(t // coarser for t in times if t < newest - week)
    assert max(middle.values(), default=1) == 1 and max(old.values(), default=1) == 1


POLICY = SpoolPolicy(
    thin_after=timedelta(hours=1), coarse=timedelta(minutes=15),
    thin_more_after=timedelta(hours=3), coarser=timedelta(hours=1), max_samples=60, keep_delivered=3,
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 3600), min_size=1, max_size=200),
    delivered_every=st.integers(0, 80),
)
def test_whatever_the_gaps_the_spool_stays_bounded_keeps_the_newest_and_delivers_in_order(
    gaps: list[int], delivered_every: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(Path(directory))
        moment, sent, written = START, [], []
        for index, gap in enumerate(gaps):
            moment += timedelta(seconds=gap)
            written.append(store.add_telemetry(moment, {"uptime_s": index}, POLICY))
            if delivered_every and index % delivered_every == 0:
                batch = store.undelivered_telemetry(7)
                sent += [row["seq"] for row in batch]
                if batch:
                    store.mark_delivered("telemetry", batch[-1]["seq"])
            rows = waiting(store)
            assert len(rows) <= POLICY.max_samples
            newest = rows[-1]["seq"] if rows else sent[-1]
            assert newest == written[-1], "the newest sample is never thinned"
            if rows:
                at_most_one_per_period(epochs(rows), POLICY)
        sent += [row["seq"] for row in waiting(store)]
        assert sent == sorted(set(sent)) and set(sent) <= set(written)
        store.close()


# -- a real broker: spooled records delivered in order, once, after reconnecting ---------------------


class PersistentBroker(Broker):
    """A Mosquitto that keeps sessions across a clean stop, so the central's subscription (and what
    is published for it before it is back) survives the outage: only the box is being tested."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        text = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        text += f"persistence true\npersistence_location {directory}/\n"
        self.config.write_text(text, encoding="utf-8")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PersistentBroker]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    running = PersistentBroker(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()


class Subscriber:
    """The central server's side: a persistent session at QoS 1 that counts every record."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-spool-central",
                                  clean_session=False, protocol=mqtt.MQTTv311)  # fmt: skip
        self.client.on_message = lambda _c, _u, m: self.got.put((m.topic, bytes(m.payload)))
        self.client.on_connect = lambda c, *_: c.subscribe(f"{topic}/#", qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.records: list[tuple[str, int]] = []  # (stream, seq) in arrival order

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic, payload = self.got.get(timeout=left)
            except queue.Empty:
                return
            kind = topic.rsplit("/", 1)[1]
            if kind in ("telemetry", "events", "playlog"):
                record = decode_record(Kind(kind), payload, "test-box-01")
                self.records.append((kind, record.seq))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored_ids(directory: Path) -> dict[str, list[int]]:
    store = Store.open_readonly(directory)
    try:

        def seqs(sql: str) -> list[int]:
            return [row[0] for row in store.db.conn.execute(sql)]

        return {
            "telemetry": seqs("SELECT id FROM telemetry ORDER BY id"),
            "events": seqs("SELECT id FROM events ORDER BY id"),
            "playlog": seqs("SELECT seq FROM play_log ORDER BY seq"),
            "waiting": list(store.undelivered_counts().values()),
        }
    finally:
        store.close()


def test_records_spooled_while_the_broker_is_down_arrive_in_order_exactly_once(
    tmp_path: Path, broker: PersistentBroker
) -> None:
    write_schedule(tmp_path)
    central_keys = tmp_path / "central.pub"
    public = Ed25519PrivateKey.generate().public_key()
    central_keys.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    extra = (
        f"central: {{mqtt_url: '{broker.url}', signing_public_key_files: [central.pub],"
        " telemetry_interval: 1s}"
    )
    config = write_config(tmp_path, extra=extra)
    subscriber = Subscriber(broker.port, "loa/v1/test-box-01")
    audio = tone_file(tmp_path, 440, 1.0)
    try:
        with running_agent(config) as box:
            link = box.agent.link
            assert link is not None
            box.wait_for(lambda: link.up, 10)
            subscriber.collect(2.5)
            before = list(subscriber.records)
            assert any(kind == "telemetry" for kind, _ in before)
            broker.stop()
            box.wait_for(lambda: not link.up, 30)
            sent_before = stored_ids(box.config.storage.dir)  # nothing is sent from here until back
            # offline: an item plays (play log), the schedule file is refused (a security event)
            write_schedule(tmp_path, f"{{id: offline-news, audio: {audio}, at: '{at(1.5)}'}}")
            box.agent.post(Reload())
            box.wait_for(lambda: box.outcome("offline-news") == "completed", 20)
            (tmp_path / "schedule.yaml").write_text("items: [{id: broken}]\n", encoding="utf-8")
            box.agent.post(Reload())
            box.wait_passes(4, 10)  # a few telemetry samples more, still offline
            spooled = stored_ids(box.config.storage.dir)
            broker.start()
            box.wait_for(lambda: link.up, 60)
            box.wait_for(lambda: stored_ids(box.config.storage.dir)["waiting"] == [0, 0, 0], 30)
            subscriber.collect(2.0)
        after = subscriber.records[len(before) :]
        for stream in ("telemetry", "events", "playlog"):
            seqs = [seq for kind, seq in after if kind == stream]
            assert seqs == sorted(seqs), f"{stream} out of order after reconnecting"
            counts = collections.Counter(seq for kind, seq in subscriber.records if kind == stream)
            outage = [seq for seq in spooled[stream] if seq not in sent_before[stream]]
            assert outage, f"nothing of {stream} was spooled"
            assert all(counts[seq] == 1 for seq in outage), f"{stream}: a spooled record lost or repeated"
    finally:
        subscriber.close()
