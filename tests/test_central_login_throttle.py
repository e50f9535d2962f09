"""Sign-in throttling through the real API and the real login page (FastAPI's TestClient), on a
SQLite file and on PostgreSQL: a few wrong passwords, then 429 with Retry-After and a plain reason,
a wait that doubles, counts per user name and per address, every refusal in the audit log; and,
since the counts live in the database, two servers on one database count together, a restart
forgets nothing, concurrent failures are all counted and stale counts are deleted."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from central import db, login_throttle, registry
from central.app import create_app
from central.context import Central
from central.login_throttle import (
    FIRST_WAIT,
    FORGET_AFTER,
    FREE_PER_ADDRESS,
    FREE_PER_USER,
    LONGEST_WAIT,
    Throttled,
)
from tests.central_harness import ADMIN_PASSWORD, central_on_database, csrf_of


class Clock:
    """The server's wall clock (``Central.clock``), moved by the test; every server shares it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Central]:
    with central_on_database(request, tmp_path) as made:
        made.clock = clock
        yield made


def actions(central: Central) -> list[tuple[str, str]]:
    return [(row["user"], row["action"]) for row in reversed(registry.audit_log(central.engine))]


def test_wrong_passwords_for_one_user_lead_to_a_growing_wait(
    client: TestClient, central: Central, clock: Clock
) -> None:
    for _ in range(FREE_PER_USER):
        assert client.post("/api/v1/auth/token", data={"username": "op-a", "password": "guess"}
                           ).status_code == 401  # fmt: skip
    # the last free failure set the first wait: now even the right password must wait
    refused = client.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD})
    assert refused.status_code == 429, refused.text
    assert (
        refused.json()["detail"] == f"too many wrong passwords for user op-a: try again in {FIRST_WAIT:.0f} s"
    )
    assert refused.headers["Retry-After"] == f"{FIRST_WAIT:.0f}"
    # another user from the same address is not held up by op-a's count
    assert client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
                       ).status_code == 200  # fmt: skip
    clock.advance(FIRST_WAIT)
    again = client.post("/api/v1/auth/token", data={"username": "op-a", "password": "guess"})
    assert again.status_code == 401
    doubled = client.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD})
    assert doubled.status_code == 429 and doubled.headers["Retry-After"] == f"{2 * FIRST_WAIT:.0f}"
    clock.advance(2 * FIRST_WAIT)
    assert client.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD}
                       ).status_code == 200  # fmt: skip
    # a right password cleared the count: the next wrong one is free again
    assert client.post("/api/v1/auth/token", data={"username": "op-a", "password": "guess"}
                       ).status_code == 401  # fmt: skip
    log = actions(central)
    assert log.count(("op-a", "login.throttled")) == 2 and log.count(("op-a", "login.failed")) == 7
    [throttled] = [row for row in registry.audit_log(central.engine) if row["action"] == "login.throttled"][
        :1
    ]
    assert throttled["detail"]["address"] == "testclient" and "try again in" in throttled["detail"]["reason"]


def test_guessing_many_names_from_one_address_is_slowed_too(client: TestClient, central: Central) -> None:
    for number in range(FREE_PER_ADDRESS):
        answer = client.post("/api/v1/auth/token", data={"username": f"name-{number}", "password": "guess"})
        assert answer.status_code == 401
    refused = client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert refused.status_code == 429
    assert "too many wrong passwords for address testclient" in refused.json()["detail"]


def test_the_login_page_says_to_wait_in_the_browsers_language(client: TestClient, central: Central) -> None:
    csrf = csrf_of(client.get("/login").text)
    form = {"username": "op-a", "password": "guess", "csrf": csrf, "next": "/boxes"}
    for _ in range(FREE_PER_USER):
        assert client.post("/login", data=form).status_code == 401
    page = client.post("/login", data=form | {"password": ADMIN_PASSWORD})
    assert page.status_code == 429 and page.headers["Retry-After"] == f"{FIRST_WAIT:.0f}"
    assert f"hãy thử lại sau {FIRST_WAIT:.0f} giây" in page.text
    # the API and the pages count together: a guesser gains nothing by switching
    api = client.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD})
    assert api.status_code == 429
    assert actions(central)[-2:] == [("op-a", "login.throttled"), ("op-a", "login.throttled")]


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    table = db.login_failures
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.kind, table.c.name, table.c.failures)).all()
    return {(row.kind, row.name): row.failures for row in rows}


def token(client: TestClient, name: str, password: str) -> int:
    return client.post("/api/v1/auth/token", data={"username": name, "password": password}).status_code


@contextmanager
def another_server(central: Central) -> Iterator[TestClient]:
    """A second server process on the same database: its own engine (connections) and app."""
    other = dataclasses.replace(central, engine=db.open_engine(central.config.database_url))
    try:
        with TestClient(create_app(other), follow_redirects=False) as client:
            yield client
    finally:
        other.engine.dispose()


def test_two_servers_on_one_database_count_together(client: TestClient, central: Central) -> None:
    with another_server(central) as other:
        for number in range(FREE_PER_USER):
            assert token(client if number % 2 else other, "op-a", "guess") == 401  # 3 here, 2 there
        assert token(client, "op-a", ADMIN_PASSWORD) == 429
        assert token(other, "op-a", ADMIN_PASSWORD) == 429
        assert token(other, "admin", ADMIN_PASSWORD) == 200
    assert counts(central.engine)[("user", "op-a")] == FREE_PER_USER


def test_a_wait_outlives_a_restart_of_the_server(client: TestClient, central: Central, clock: Clock) -> None:
    for _ in range(FREE_PER_USER + 1):
        token(client, "op-a", "guess")  # five wrong ones, the sixth refused already
    central.engine.dispose()  # the server stops: nothing of it stays but the database
    with another_server(central) as restarted:
        refused = restarted.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == f"{FIRST_WAIT:.0f}"
        clock.advance(FIRST_WAIT)
        assert token(restarted, "op-a", ADMIN_PASSWORD) == 200


def test_the_wait_stops_growing_and_an_old_count_is_forgotten_and_deleted(
    central: Central, clock: Clock
) -> None:
    engine = central.engine
    for _ in range(FREE_PER_USER + 30):
        login_throttle.failed(engine, "Op-A", "10.0.0.1", clock())
    with pytest.raises(Throttled) as refused:
        login_throttle.check(engine, "op-a", "10.0.0.2", clock())
    assert refused.value.wait_s == LONGEST_WAIT and refused.value.kind == "user"
    assert str(refused.value) == f"too many wrong passwords for user op-a: try again in {LONGEST_WAIT:.0f} s"
    clock.advance(LONGEST_WAIT)
    login_throttle.check(engine, "op-a", "10.0.0.2", clock())  # the wait is over: one more try
    login_throttle.failed(engine, "op-a", "10.0.0.2", clock())
    with pytest.raises(Throttled):  # the count is not: the next wrong one waits the longest again
        login_throttle.check(engine, "op-a", "10.0.0.2", clock())
    clock.advance(FORGET_AFTER + 1)
    login_throttle.check(engine, "op-a", "10.0.0.2", clock())
    login_throttle.failed(engine, "someone", "10.0.0.3", clock())  # deletes the counts an hour old
    assert counts(engine) == {("user", "someone"): 1, ("address", "10.0.0.3"): 1}
    login_throttle.failed(engine, "op-a", "10.0.0.2", clock())
    login_throttle.check(engine, "op-a", "10.0.0.2", clock())  # one failure after a long quiet: free again
    assert counts(engine)[("user", "op-a")] == 1


def test_failures_counted_at_once_by_two_servers_are_all_counted(central: Central, clock: Clock) -> None:
    """Four threads on two engines count the same name and address at once: an update lost to a
    race (read, add one, write) would leave fewer."""
    engines = [central.engine, db.open_engine(central.config.database_url)]
    each, threads_n = 25, 4
    start, errors = threading.Barrier(threads_n), []

    def guess(engine: Engine) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(each):
                login_throttle.failed(engine, "op-a", "10.0.0.9", clock())
        except Exception as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=guess, args=(engines[number % 2],)) for number in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    engines[1].dispose()
    assert errors == []
    assert counts(central.engine) == {
        ("user", "op-a"): each * threads_n,
        ("address", "10.0.0.9"): each * threads_n,
    }


def test_a_database_made_before_the_counts_were_kept_gets_their_table_on_start(
    central: Central, clock: Clock
) -> None:
    with central.engine.begin() as conn:
        conn.execute(text("DROP TABLE login_failures"))
    central.engine.dispose()
    engine = db.open_engine(central.config.database_url)
    try:
        login_throttle.failed(engine, "op-a", "10.0.0.1", clock())
        assert counts(engine) == {("user", "op-a"): 1, ("address", "10.0.0.1"): 1}
    finally:
        engine.dispose()
