"""Indexes added to an existing PostgreSQL database at start-up are built CONCURRENTLY, on the suite's
real PostgreSQL: a database made before gets them valid, an unfinished one an interrupted build left
is built again, and ingest's writes go on while one builds.  (SQLite's plain build is checked in
tests/test_central_retention.py on both databases.)"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, insert, text
from sqlalchemy.exc import IntegrityError

from central import db
from central.config import RetentionConfig
from central.retention import Pruner, PruneThread
from central.server import start_index_build
from tests.postgres_server import Postgres

INDEX = "ix_records_stream_received"
AT = datetime(2026, 11, 27, tzinfo=UTC)
_SEQ = iter(range(1, 10**6))


@pytest.fixture
def engine(postgres: Postgres) -> Iterator[Engine]:
    """The server's tables on the module's PostgreSQL, as a database made before: without ``INDEX``."""
    made = db.open_engine(postgres.url)
    with made.begin() as conn:
        conn.execute(text(f"DROP INDEX {INDEX}"))
    yield made
    db.metadata.drop_all(made)
    made.dispose()


def add_record(conn: Connection, stream: str = "telemetry") -> None:
    seq = next(_SEQ)
    conn.execute(insert(db.records), {"stream": stream, "record_id": f"xa-a-01:{seq}", "device_id": "xa-a-01",
                                      "seq": seq, "at": AT, "data": {}, "received_at": AT})  # fmt: skip


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def index_flags(engine: Engine) -> tuple[bool, bool] | None:
    """``(valid, unique)`` of ``INDEX``, or None when there is none."""
    with engine.connect() as conn:
        query = "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = to_regclass(:name)"
        row = conn.execute(text(query), {"name": INDEX}).first()
    return None if row is None else (bool(row[0]), bool(row[1]))


def test_a_database_made_before_gets_the_index_valid_at_start(engine: Engine) -> None:
    with engine.begin() as conn:
        add_record(conn)
    assert index_flags(engine) is None
    db.open_engine(url_of(engine)).dispose()  # the next start
    assert index_flags(engine) == (True, False)


def test_an_index_an_interrupted_build_left_invalid_is_built_again(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as conn:  # two rows the unique build below stops at, as a crash would stop it
        add_record(conn)
        add_record(conn)
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        pytest.raises(IntegrityError),
    ):
        conn.execute(text(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON records (stream, received_at)"))
    assert index_flags(engine) == (False, True)  # left behind, INVALID: queries never use it
    caplog.set_level(logging.INFO, "central.db")
    db.open_engine(url_of(engine)).dispose()
    assert index_flags(engine) == (True, False)
    assert f"database: index {INDEX} was left unfinished by an interrupted build: building it again" in [
        record.getMessage() for record in caplog.records
    ]


def building(engine: Engine) -> str | None:
    """The statement of a session waiting on a lock while it builds ``INDEX``, if one is."""
    with engine.connect() as conn:
        query = ("SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query LIKE 'CREATE INDEX%' AND query LIKE :name")  # fmt: skip
        found = conn.execute(text(query), {"name": f"%{INDEX}%"}).scalar()
    return None if found is None else str(found)


def test_serve_builds_the_index_beside_ingest_and_retention_waits_for_it(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction writing the table stays open, so the build must wait for it: a plain CREATE
    INDEX would wait holding its place in the lock queue, and every later insert behind it (ingest
    would stop); CONCURRENTLY waits without holding writes.  Retention's first pass, which deletes
    by that index, waits for the build."""
    holder = engine.connect()
    holder.begin()
    add_record(holder)
    started = db.open_engine(url_of(engine), defer_indexes=True)  # what serve does
    assert index_flags(engine) is None
    caplog.set_level(logging.INFO, "central.db")
    pruner = Pruner(started, RetentionConfig(), lambda: AT + timedelta(days=400))
    try:
        indexed = start_index_build(started)
        retention = PruneThread(pruner, first_after=0, every=3600, after=indexed)
        retention.start()
        deadline = time.monotonic() + 30
        while (statement := building(engine)) is None:
            assert time.monotonic() < deadline, "the start never began building the index"
        assert statement.startswith(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON records")
        with engine.begin() as writer:  # what ingest does meanwhile: refused if it has to wait 5 s
            writer.execute(text("SET LOCAL lock_timeout = '5s'"))
            add_record(writer)
        db.add_later_indexes(engine)  # another process starting meanwhile leaves the build to it
        assert f"database: index {INDEX} is being built by another process" in caplog.messages
        assert not indexed.is_set() and retention.passes == 0
    finally:
        holder.commit()
        holder.close()
    try:
        assert indexed.wait(60) and retention.passed.wait(60)
    finally:
        retention.stop()
        started.dispose()
    assert index_flags(engine) == (True, False)
    with engine.connect() as conn:  # the pass after the build removed all three, 400 days old now
        assert conn.execute(text("SELECT count(*) FROM records")).scalar() == 0
