"""Ingest of what boxes send, idempotent by record id, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import queue
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from central import commands, db
from central.access import Scope
from central.app import create_app
from central.context import Central
from central.ingest import Ingestor, IngestThread
from central.mqtt_link import Incoming
from central.registry import User, all_units
from protocol.messages import Ack, AckResult, Record, StateMessage, StatusMessage
from protocol.topics import Kind
from tests.central_harness import ADMIN_PASSWORD, RecordingPublisher, make_central

AT = datetime(2099, 1, 1, 6, 0, tzinfo=UTC)


def message(device: str, kind: str, payload: str | bytes) -> Incoming:
    return Incoming(f"loa/v1/{device}/{kind}", payload.encode() if isinstance(payload, str) else payload)


def playlog(seq: int, outcome: str, device: str = "xa-a-01") -> Incoming:
    data = {"key": "sang@2099-01-01T06:00:00+00:00", "item_id": "sang", "audio": "a" * 64, "level": "normal",
            "zones": [], "scheduled_start": "2099-01-01T06:00:00.000Z",
            "actual_start": "2099-01-01T06:00:00.010Z" if outcome != "waiting" else None,
            "ended": "2099-01-01T06:10:00.000Z" if outcome == "completed" else None, "outcome": outcome,
            "reason": "", "origin": "central"}  # fmt: skip
    return message(device, "playlog", Record(Kind.PLAYLOG, device, seq, AT, data).to_json())


def count(central: Central, table: Any) -> int:
    with central.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_record_sent_again_is_stored_once(central: Central) -> None:
    ingest = Ingestor(central.engine, lambda: AT)
    telemetry = Record(Kind.TELEMETRY, "xa-a-01", 9, AT, {"cpu_temp_c": 51.5, "relays_on": []})
    event = Record(Kind.EVENTS, "xa-a-01", 9, AT, {"kind": "clock.trusted", "severity": "info", "detail": {}})
    for _ in range(3):
        assert ingest.handle(message("xa-a-01", "telemetry", telemetry.to_json()))
        assert ingest.handle(message("xa-a-01", "events", event.to_json()))  # the same seq, another stream
    assert count(central, db.records) == 2
    with central.engine.connect() as conn:
        device = conn.execute(select(db.devices).where(db.devices.c.id == "xa-a-01")).one()
    assert device.telemetry == {"cpu_temp_c": 51.5, "relays_on": []} and device.last_seen == AT


def test_the_later_play_log_record_of_an_occurrence_wins_in_any_order(central: Central) -> None:
    ingest = Ingestor(central.engine, lambda: AT)
    for incoming in (
        playlog(7, "completed"),
        playlog(5, "playing"),
        playlog(4, "waiting"),
        playlog(7, "completed"),
    ):
        assert ingest.handle(incoming)
    with central.engine.connect() as conn:
        [row] = conn.execute(select(db.playlogs)).all()
    assert (row.seq, row.outcome, row.ended) == (7, "completed", datetime(2099, 1, 1, 6, 10, tzinfo=UTC))
    assert count(central, db.records) == 3


def test_a_late_will_of_an_old_session_changes_nothing(central: Central) -> None:
    ingest = Ingestor(central.engine, lambda: AT)

    def status(online: bool, session: int) -> Incoming:
        return message("xa-a-01", "status", StatusMessage(online, session, AT).to_json())

    def held() -> tuple[bool, int]:
        with central.engine.connect() as conn:
            row = conn.execute(
                select(db.devices.c.online, db.devices.c.session).where(db.devices.c.id == "xa-a-01")
            )
            online, session = row.one()
        return online, session

    ingest.handle(status(True, 3))
    assert held() == (True, 3)
    ingest.handle(status(False, 2))  # the will of the session before, delivered late
    assert held() == (True, 3)
    ingest.handle(status(False, 3))
    assert held() == (False, 3)


def test_what_is_not_a_registered_boxs_valid_message_is_dropped(central: Central) -> None:
    ingest = Ingestor(central.engine, lambda: AT)
    other = Record(Kind.EVENTS, "xa-b-01", 1, AT, {"kind": "x", "severity": "info", "detail": {}}).to_json()
    for incoming in (
        message("xa-a-01", "events", b"{not json"),
        message("xa-a-01", "events", other),  # another box's record on this box's topic
        message("xa-z-99", "events", other.replace("xa-b-01", "xa-z-99")),  # not registered
        message(
            "xa-a-01",
            "telemetry",
            json.dumps(
                {"v": 1, "id": "xa-a-01:1", "at": "2099-01-01T00:00:00Z", "data": {"cpu_temp_c": "hot"}}
            ),
        ),  # not a number
        Incoming("loa/v1/group/xa-a/cmd", b"forged"),
    ):
        assert not ingest.handle(incoming)
    assert ingest.dropped == 5 and count(central, db.records) == 0


def test_acks_move_each_target_to_its_final_answer(central: Central) -> None:
    admin = User(1, "admin", "admin", None)
    ident = commands.send(central, Scope(admin, all_units(central.engine)), "stop", {},
                          {"devices": ["xa-a-01", "xa-a-02"]})  # fmt: skip
    ingest = Ingestor(central.engine, lambda: AT)

    def ack(device: str, result: AckResult, seconds: int, reason: str | None = None) -> Incoming:
        return message(device, "ack", Ack(ident, result, AT + timedelta(seconds=seconds), reason).to_json())

    for incoming in (
        ack("xa-a-01", AckResult.DONE, 2),
        ack("xa-a-01", AckResult.ACCEPTED, 1),
        ack("xa-a-02", AckResult.REJECTED, 1, "expired"),
        ack("xa-a-02", AckResult.REJECTED, 1, "expired"),
    ):
        assert ingest.handle(incoming)
    found = commands.status(central.engine, Scope(admin, all_units(central.engine)), ident)
    assert found is not None
    assert {device: (a["result"], a["reason"]) for device, a in found["acks"].items()} == {
        "xa-a-01": ("done", None), "xa-a-02": ("rejected", "expired")}  # fmt: skip
    assert count(central, db.acks) == 3
    # an ack for a command this box was not sent is not stored
    ingest.handle(message("xa-b-01", "ack", Ack(ident, AckResult.DONE, AT).to_json()))
    assert count(central, db.acks) == 3


def test_a_box_silent_past_the_threshold_shows_offline(central: Central) -> None:
    now = [AT]
    central.clock = lambda: now[0]
    ingest = Ingestor(central.engine, central.clock)
    ingest.handle(message("xa-a-01", "status", StatusMessage(True, 1, AT).to_json()))
    state = StateMessage(1, AT, None, (), 80, {"central": "3"}, True, "ntp")
    ingest.handle(message("xa-a-01", "state", state.to_json()))
    with TestClient(create_app(central)) as client:
        token = client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        box = client.get("/api/v1/devices/xa-a-01", headers=headers).json()
        assert (
            box["online"]
            and box["state"]["schedules"] == {"central": "3"}
            and box["last_seen"].startswith("2099")
        )
        now[0] = AT + central.config.offline_after + timedelta(seconds=1)
        assert not client.get("/api/v1/devices/xa-a-01", headers=headers).json()["online"]
        ingest.handle(playlog(1, "playing"))  # anything it sends brings it back
        assert client.get("/api/v1/devices/xa-a-01", headers=headers).json()["online"]
        rows = client.get("/api/v1/playlogs", headers=headers).json()
        assert [(r["device_id"], r["outcome"]) for r in rows] == [("xa-a-01", "playing")]


def test_what_waits_in_the_queue_is_stored_in_one_transaction_as_if_one_by_one(central: Central) -> None:
    """Ingest takes everything queued into one transaction (one commit, one fsync): same rows as the
    same messages one by one, a duplicate in the batch stored once, the later play-log record kept."""
    commits: list[int] = []
    event.listen(central.engine, "commit", lambda _conn: commits.append(1))
    ingest = Ingestor(central.engine, lambda: AT)
    telemetry = Record(Kind.TELEMETRY, "xa-a-01", 1, AT, {"cpu_temp_c": 50.0}).to_json()
    inbox: queue.Queue[Incoming] = queue.Queue()
    for incoming in (
        message("xa-a-01", "status", StatusMessage(True, 1, AT).to_json()),
        message("xa-a-01", "state", StateMessage(1, AT, None, (), 80, {}, True, "ntp").to_json()),
        message("xa-a-01", "telemetry", telemetry),
        message("xa-a-01", "telemetry", telemetry),  # sent again: stored once
        playlog(5, "playing"),
        playlog(7, "completed"),
        playlog(4, "waiting"),  # older than what the batch already holds
        message("xa-a-01", "events", b"{not json"),  # dropped, the others kept
        message("xa-b-01", "status", StatusMessage(True, 4, AT).to_json()),
    ):
        inbox.put(incoming)
    thread = IngestThread(ingest, inbox)
    thread.start()
    deadline = time.monotonic() + 30
    while ingest.stored + ingest.dropped < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.stop()
    assert (ingest.stored, ingest.dropped, len(commits)) == (8, 1, 1)
    with central.engine.connect() as conn:
        boxes = {row.id: row for row in conn.execute(select(db.devices))}
        [log] = conn.execute(select(db.playlogs)).all()
    assert boxes["xa-a-01"].online and boxes["xa-a-01"].telemetry == {"cpu_temp_c": 50.0}
    assert boxes["xa-a-01"].state["volume"] == 80 and boxes["xa-a-01"].last_seen == AT
    assert boxes["xa-b-01"].online and boxes["xa-b-01"].session == 4
    assert (log.seq, log.outcome) == (7, "completed") and count(central, db.records) == 4


def test_a_row_the_database_refuses_loses_only_its_own_message(tmp_path: Path) -> None:
    central = make_central(tmp_path, RecordingPublisher())
    with central.engine.begin() as conn:  # the database itself refuses one record, as a constraint would
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.record_id = 'xa-a-01:13' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the bench trigger'); END"
        )
    ingest = Ingestor(central.engine, lambda: AT)
    batch = [
        message(
            "xa-a-01", "telemetry", Record(Kind.TELEMETRY, "xa-a-01", seq, AT, {"load_1m": 0.1}).to_json()
        )
        for seq in (12, 13, 14)
    ]
    try:
        assert ingest.handle_batch(batch) == 2
        with central.engine.connect() as conn:
            stored = sorted(row.record_id for row in conn.execute(select(db.records.c.record_id)))
        assert stored == ["xa-a-01:12", "xa-a-01:14"] and ingest.stored == 2
    finally:
        central.engine.dispose()


def test_what_the_database_does_not_take_is_kept_acknowledged_only_once_stored(tmp_path: Path) -> None:
    """The database away (here: refusing every record) loses nothing: ingest keeps the messages, leaves
    them unacknowledged, tries again with a pause, and stores each once when it takes them again; a
    message it refuses while taking others is dropped after three strikes, and only then acknowledged."""
    central = make_central(tmp_path, RecordingPublisher())
    refuse_all = "CREATE TRIGGER away BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    with central.engine.begin() as conn:
        conn.exec_driver_sql(refuse_all)
    acked: list[Incoming] = []
    inbox: queue.Queue[Incoming] = queue.Queue()
    thread = IngestThread(Ingestor(central.engine, lambda: AT), inbox, acked.extend)

    def telemetry(seq: int) -> Incoming:
        record = Record(Kind.TELEMETRY, "xa-a-01", seq, AT, {"load_1m": 0.1})
        return message("xa-a-01", "telemetry", record.to_json())

    def wait_for(what: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"not within {timeout} s; acked: {acked}"
            time.sleep(0.02)

    thread.start()
    try:
        for seq in (1, 2, 3):
            inbox.put(telemetry(seq))
        wait_for(lambda: thread.ingestor.failed >= 2)  # tried, paused, tried again
        assert acked == [] and count(central, db.records) == 0
        with central.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER away")  # the database is back
        wait_for(lambda: len(acked) == 3)
        assert count(central, db.records) == 3
        with central.engine.begin() as conn:  # now it refuses one row only, as a constraint would
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.record_id = 'xa-a-01:9' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        poison = telemetry(9)
        inbox.put(poison)
        seq = 10
        while poison not in acked:  # others keep coming: each try beside them is a strike
            assert seq < 200, "the refused message was never given up"
            inbox.put(telemetry(seq))
            seq += 1
            time.sleep(0.05)
        wait_for(lambda: len(acked) == 3 + 1 + (seq - 10))  # the last ones fed are stored too
        with central.engine.connect() as conn:
            stored = {row.record_id for row in conn.execute(select(db.records.c.record_id))}
    finally:
        thread.stop()
        central.engine.dispose()
    assert thread.ingestor.dropped == 1 and "xa-a-01:9" not in stored
    assert stored == {f"xa-a-01:{n}" for n in (1, 2, 3, *range(10, seq))}
    assert len({id(m) for m in acked}) == len(acked), "each message acknowledged once"
