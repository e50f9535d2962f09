"""The central store's tables on SQLite and on a real PostgreSQL started by the suite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from central import db
from tests.postgres_server import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'central.db'}"
    else:
        server: Postgres = request.getfixturevalue("postgres")
        url = server.url
    engine = db.open_engine(url)
    try:
        yield engine
    finally:
        db.metadata.drop_all(engine)
        engine.dispose()


NOW = datetime(2099, 1, 1, 6, 0, tzinfo=UTC)


def add_tree(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(db.units), [
            {"id": "tinh-quang-tri", "parent": None, "name": "Tỉnh Quảng Trị", "level": "province"},
            {"id": "xa-quang-son", "parent": "tinh-quang-tri", "name": "Xã Quảng Sơn", "level": "commune"},
        ])  # fmt: skip
        groups = ["xa-quang-son", "tinh-quang-tri"]
        conn.execute(insert(db.devices).values(
            id="xa-quang-son-01", unit="xa-quang-son", groups=groups, created_at=NOW
        ))  # fmt: skip


def test_times_come_back_aware_utc_and_names_intact(engine: Engine) -> None:
    add_tree(engine)
    hanoi = datetime(2099, 1, 1, 13, 0, tzinfo=UTC) + timedelta(hours=0)
    with engine.begin() as conn:
        conn.execute(db.devices.update().values(last_seen=hanoi.astimezone()))
        row = conn.execute(select(db.devices.c.last_seen, db.devices.c.groups)).one()
        name = conn.execute(select(db.units.c.name).where(db.units.c.id == "xa-quang-son")).scalar_one()
    assert row.last_seen == hanoi and row.last_seen.tzinfo is not None
    assert row.groups == ["xa-quang-son", "tinh-quang-tri"]
    assert name == "Xã Quảng Sơn"


def test_a_naive_time_is_refused(engine: Engine) -> None:
    add_tree(engine)
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(db.devices.update().values(last_seen=datetime(2099, 1, 1)))


def test_a_record_sent_twice_is_stored_once(engine: Engine) -> None:
    row = {"stream": "events", "record_id": "xa-quang-son-01:7", "device_id": "xa-quang-son-01", "seq": 7,
           "at": NOW, "data": {"kind": "clock.trusted"}, "received_at": NOW}  # fmt: skip
    statement = db.insert_ignoring_duplicates(engine, db.records, ["stream", "record_id"]).returning(
        db.records.c.seq_id
    )
    with engine.begin() as conn:
        first = len(conn.execute(statement, row).all())
        again = len(conn.execute(statement, row | {"data": {"kind": "changed"}}).all())
        other_stream = len(conn.execute(statement, row | {"stream": "playlog"}).all())
        stored = conn.execute(select(db.records.c.stream, db.records.c.data)).all()
    assert (first, again, other_stream) == (1, 0, 1)
    assert sorted(stored) == [("events", {"kind": "clock.trusted"}), ("playlog", {"kind": "clock.trusted"})]


def test_units_refuse_an_unknown_parent(engine: Engine) -> None:
    with pytest.raises(Exception, match=r"(?i)foreign key"), engine.begin() as conn:
        conn.execute(insert(db.units).values(id="xa-1", parent="nowhere", name="X", level="commune"))
