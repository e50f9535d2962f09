"""Retention: old ingested records go, stream by stream, in bounded transactions, on SQLite and on a real
PostgreSQL; newer ones, the play log a yearly report needs and a box's latest telemetry stay."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, func, insert, inspect, select, text

from central import cli, commands, db
from central.access import Scope
from central.app import create_app
from central.config import RetentionConfig
from central.context import Central
from central.ingest import Ingestor
from central.mqtt_link import Incoming
from central.registry import User, all_units
from central.retention import Pruner, PruneThread
from protocol.messages import Ack, AckResult, Record
from protocol.topics import Kind
from tests.central_harness import login

NOW = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def add_records(central: Central, stream: str, *received: datetime, device: str = "xa-a-01") -> None:
    """Records of ``stream`` received at each of ``received`` (the box said they were an hour older)."""
    with central.engine.begin() as conn:
        first = int(conn.execute(select(func.count()).select_from(db.records)).scalar_one())
        rows = [{"stream": stream, "record_id": f"{device}:{first + index}", "device_id": device,
                 "seq": first + index, "at": at - timedelta(hours=1), "data": {"n": first + index},
                 "received_at": at} for index, at in enumerate(received)]  # fmt: skip
        conn.execute(insert(db.records), rows)


def add_plays(central: Central, *scheduled: datetime) -> None:
    with central.engine.begin() as conn:
        conn.execute(insert(db.playlogs), [
            {"device_id": "xa-a-01", "key": f"sang@{at.isoformat()}", "seq": index, "item_id": "sang",
             "audio": "a" * 64, "level": "normal", "zones": [], "scheduled_start": at, "actual_start": at,
             "ended": at + timedelta(minutes=5), "outcome": "completed", "reason": "", "origin": "central"}
            for index, at in enumerate(scheduled)
        ])  # fmt: skip


def received(central: Central, stream: str) -> list[datetime]:
    with central.engine.connect() as conn:
        query = select(db.records.c.received_at).where(db.records.c.stream == stream)
        return sorted(conn.execute(query).scalars())


def count(central: Central, table: Any) -> int:
    with central.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def scheduled(central: Central) -> list[datetime]:
    with central.engine.connect() as conn:
        return sorted(conn.execute(select(db.playlogs.c.scheduled_start)).scalars())


def test_each_stream_keeps_its_own_days(central: Central) -> None:
    add_records(central, "telemetry", ago(29.9), ago(30.1), ago(200))
    add_records(central, "events", ago(30.1), ago(399.9), ago(400.1))
    add_records(central, "playlog", ago(30.1), ago(399.9), ago(400.1))
    add_plays(central, ago(30), ago(399.9), ago(400.1), ago(800))
    pruned = Pruner(central.engine, RetentionConfig(), lambda: NOW).prune()
    assert received(central, "telemetry") == [ago(29.9)]
    assert received(central, "events") == [ago(399.9), ago(30.1)]
    assert received(central, "playlog") == [ago(399.9), ago(30.1)]
    assert scheduled(central) == [ago(399.9), ago(30)]
    assert [(p.target.name, p.rows) for p in pruned] == [
        ("telemetry records", 2), ("events records", 1), ("playlog records", 1), ("play-log rows", 2),
        ("command acks", 0), ("command targets", 0), ("commands", 0), ("audit entries", 0)
    ]  # fmt: skip


def test_shorter_limits_are_taken_and_the_play_log_keeps_a_reporting_year(central: Central) -> None:
    add_records(central, "telemetry", ago(1.5), ago(0.5))
    add_records(central, "events", ago(10.5), ago(9.5))
    add_plays(central, ago(364), ago(399.5), ago(400.5))  # last year's report still has its rows
    Pruner(central.engine, RetentionConfig(telemetry_days=1, events_days=10), lambda: NOW).prune()
    assert received(central, "telemetry") == [ago(0.5)]
    assert received(central, "events") == [ago(9.5)]
    assert scheduled(central) == [ago(399.5), ago(364)]


def test_a_box_keeps_its_latest_telemetry_when_its_records_go(central: Central) -> None:
    ingestor = Ingestor(central.engine, lambda: ago(40))
    data = {"cpu_temp_c": 48.0, "relays_on": []}
    payload = Record(Kind.TELEMETRY, "xa-a-01", 7, ago(40), data).to_json()
    assert ingestor.handle(Incoming("loa/v1/xa-a-01/telemetry", payload.encode()))
    assert received(central, "telemetry") == [ago(40)]
    Pruner(central.engine, RetentionConfig(), lambda: NOW).prune()
    assert received(central, "telemetry") == []
    with central.engine.connect() as conn:
        row = conn.execute(select(db.devices).where(db.devices.c.id == "xa-a-01")).one()
    assert (row.telemetry, row.telemetry_at, row.last_seen) == (data, ago(40), ago(40))


def test_rows_go_in_transactions_of_at_most_a_batch(
    central: Central, caplog: pytest.LogCaptureFixture
) -> None:
    add_records(central, "telemetry", *(ago(31 + n) for n in range(10)), ago(1))
    add_plays(central, *(ago(401 + n) for n in range(5)))
    commits: list[int] = []
    event.listen(central.engine, "commit", lambda _conn: commits.append(1))
    caplog.set_level(logging.INFO, "central.retention")
    pruner = Pruner(central.engine, RetentionConfig(), lambda: NOW, batch=4, pause=0, progress_every=0)
    pruned = pruner.prune()
    by_name = {p.target.name: (p.rows, p.transactions) for p in pruned}
    # 10 rows by 4: 4, 4, 2; 5 play-log rows: 4, 1; each stream with nothing to remove: one empty try
    assert by_name == {"telemetry records": (10, 3), "events records": (0, 1), "playlog records": (0, 1),
                       "play-log rows": (5, 2), "command acks": (0, 1), "command targets": (0, 1),
                       "commands": (0, 1), "audit entries": (0, 1)}  # fmt: skip
    assert len(commits) == 11
    logged = [record.getMessage() for record in caplog.records]
    progress = [f"retention: {n} telemetry records removed so far, going on" for n in (4, 8, 10)]
    assert logged[:4] == [
        *progress,
        "retention: removed 10 telemetry records older than 30 days (before 2026-10-28T00:00:00+00:00) in 3 "
        f"transactions, the longest {pruned[0].longest_s * 1000:.0f} ms",
    ]
    assert received(central, "telemetry") == [ago(1)] and scheduled(central) == []


def test_a_command_goes_with_its_targets_and_acks_when_sent_before_the_limit(central: Central) -> None:
    admin = Scope(User(1, "admin", "admin", None), all_units(central.engine))
    sent = {}
    for days in (401, 399):
        central.clock = lambda days=days: ago(days)  # type: ignore[misc]
        ident = commands.send(central, admin, "stop", {}, {"communes": ["xa-a"]})
        ingestor = Ingestor(central.engine, central.clock)
        for device in ("xa-a-01", "xa-a-02"):
            for result, seconds in ((AckResult.ACCEPTED, 1), (AckResult.DONE, 2)):
                ack = Ack(ident, result, ago(days) + timedelta(seconds=seconds)).to_json()
                assert ingestor.handle(Incoming(f"loa/v1/{device}/ack", ack.encode()))
        sent[days] = ident
    assert [count(central, table) for table in (db.commands, db.command_targets, db.acks)] == [2, 4, 8]
    pruned = Pruner(central.engine, RetentionConfig(), lambda: NOW, batch=3, pause=0).prune()
    by_name = {p.target.name: (p.rows, p.transactions) for p in pruned}
    assert [by_name[name] for name in ("command acks", "command targets", "commands")] == [
        (4, 2), (2, 1), (1, 1)]  # fmt: skip
    assert commands.status(central.engine, admin, sent[401]) is None
    kept = commands.status(central.engine, admin, sent[399])
    assert kept is not None and {a["result"] for a in kept["acks"].values()} == {"done"}
    assert [count(central, table) for table in (db.commands, db.command_targets, db.acks)] == [1, 2, 4]
    with central.engine.connect() as conn:
        assert set(conn.execute(select(db.acks.c.command_id)).scalars()) == {sent[399]}


def add_audit(central: Central, *written: datetime) -> None:
    with central.engine.begin() as conn:
        conn.execute(insert(db.audit), [
            {"at": at, "user": "op-a", "action": "bulletin.create", "target": f"bulletin {n}", "detail": {}}
            for n, at in enumerate(written)
        ])  # fmt: skip


def audited(central: Central) -> list[datetime]:
    """When each audit entry of op-a (the ones add_audit writes) was written, oldest first."""
    with central.engine.connect() as conn:
        query = select(db.audit.c.at).where(db.audit.c.user == "op-a")
        return sorted(conn.execute(query).scalars())


def test_the_audit_log_is_kept_five_years_and_goes_in_batches_after(central: Central) -> None:
    setting_up = count(central, db.audit)  # init, device add, user add: written now, kept
    add_audit(central, ago(1824.9), ago(1825.1), ago(1900), ago(3000), ago(10))
    pruned = Pruner(central.engine, RetentionConfig(), lambda: NOW, batch=2, pause=0).prune()
    assert [(p.rows, p.transactions) for p in pruned if p.target.name == "audit entries"] == [(3, 2)]
    assert audited(central) == [ago(1824.9), ago(10)]
    Pruner(central.engine, RetentionConfig(audit_days=400), lambda: NOW).prune()
    assert audited(central) == [ago(10)]
    assert count(central, db.audit) == setting_up + 1


def test_a_report_before_the_kept_play_log_is_refused_with_the_first_day_it_can_start(
    central: Central,
) -> None:
    central.clock = lambda: NOW  # type: ignore[method-assign]
    with TestClient(create_app(central)) as client:
        headers = login(client)

        def report(start: str) -> Any:
            return client.get("/api/v1/reports/broadcasts", headers=headers,
                              params={"from": start, "to": "2026-01-31"})  # fmt: skip

        # 400 days before 2026-11-27 00:00 UTC is 2025-10-23 07:00 in the boxes' zone
        refused = report("2025-10-23")
        assert refused.status_code == 422
        assert refused.json()["detail"] == ("from 2025-10-23: the play log is kept 400 days "
                                            "(retention.playlog_days): a report can start on 2025-10-24 or "
                                            "later")  # fmt: skip
        assert report("2025-10-24").status_code == 200


def test_a_database_made_before_gets_the_index_retention_deletes_by(central: Central) -> None:
    def indexes(table: str) -> set[str]:
        return {index["name"] or "" for index in inspect(central.engine).get_indexes(table)}

    with central.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_records_stream_received"))
        conn.execute(text("DROP INDEX ix_commands_created"))
    assert "ix_records_stream_received" not in indexes("records")
    assert "ix_commands_created" not in indexes("commands")
    db.open_engine(central.config.database_url).dispose()  # what the next start does
    assert "ix_records_stream_received" in indexes("records")
    assert "ix_commands_created" in indexes("commands")


def test_serve_s_thread_prunes_soon_after_start_and_stops_at_once(central: Central) -> None:
    add_records(central, "telemetry", ago(31), ago(1))
    thread = PruneThread(Pruner(central.engine, RetentionConfig(), lambda: NOW), first_after=0.01,
                         every=3600)  # fmt: skip
    thread.start()
    try:
        assert thread.passed.wait(20)
        assert received(central, "telemetry") == [ago(1)]
    finally:
        thread.stop()
    assert not thread.thread.is_alive() and thread.passes == 1


def test_a_stop_ends_a_pass_between_two_batches(central: Central) -> None:
    add_records(central, "telemetry", *(ago(31 + n) for n in range(10)))
    stop = threading.Event()
    event.listen(central.engine, "commit", lambda _conn: stop.set())
    pruned = Pruner(central.engine, RetentionConfig(), lambda: NOW, batch=4, pause=0).prune(stop)
    assert [(p.rows, p.transactions) for p in pruned] == [(4, 1)] + [(0, 0)] * 7
    assert len(received(central, "telemetry")) == 6


def test_a_failed_pass_is_logged_and_the_next_one_tries_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    away = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'central.db'}")
    thread = PruneThread(Pruner(away, RetentionConfig(), lambda: NOW), first_after=0.01, every=0.05)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while thread.passes < 2 and time.monotonic() < deadline:
            thread.passed.wait(1)
            thread.passed.clear()
    finally:
        thread.stop()
    assert thread.passes >= 2 and not thread.thread.is_alive()
    failures = [r for r in caplog.records if r.getMessage().startswith("retention pass failed")]
    assert len(failures) >= 2 and all(r.exc_info for r in failures)


def test_prune_on_the_command_line_counts_then_removes(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    with central.engine.begin() as conn:
        conn.execute(insert(db.records), [
            {"stream": "telemetry", "record_id": f"xa-b-01:{n}", "device_id": "xa-b-01", "seq": n,
             "at": now - timedelta(days=days), "data": {}, "received_at": now - timedelta(days=days)}
            for n, days in enumerate((100, 45, 2))
        ])  # fmt: skip
    config = f"--config={central.config.source}"
    assert cli.main([config, "prune", "--dry-run"]) == 0
    counted = capsys.readouterr().out.splitlines()
    assert counted[0].startswith("would remove 2 telemetry records older than 30 days (before ")
    assert counted[1].startswith("would remove 0 events records older than 400 days")
    assert len(received(central, "telemetry")) == 3
    assert cli.main([config, "prune"]) == 0
    removed = capsys.readouterr().out.splitlines()
    assert removed[0].startswith("removed 2 telemetry records older than 30 days"), removed
    assert " in 1 transactions" in removed[0]
    assert [at.date() for at in received(central, "telemetry")] == [(now - timedelta(days=2)).date()]
