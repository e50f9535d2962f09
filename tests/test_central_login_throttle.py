"""Sign-in throttling through the real API and the real login page (FastAPI's TestClient over a real
SQLite file): a few wrong passwords, then 429 with Retry-After and a plain reason, a wait that
doubles, counts per user name and per address, and every refusal in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central import registry
from central.context import Central
from central.login_throttle import (
    FIRST_WAIT,
    FORGET_AFTER,
    FREE_PER_ADDRESS,
    FREE_PER_USER,
    LONGEST_WAIT,
    LoginThrottle,
    Throttled,
)
from tests.central_harness import ADMIN_PASSWORD, RecordingPublisher, csrf_of, make_central


class Clock:
    """The throttle's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def central(tmp_path: Path, clock: Clock) -> Iterator[Central]:
    made = make_central(tmp_path, RecordingPublisher())
    made.logins = LoginThrottle(clock)
    yield made
    made.engine.dispose()


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
    clock.now += FIRST_WAIT
    again = client.post("/api/v1/auth/token", data={"username": "op-a", "password": "guess"})
    assert again.status_code == 401
    doubled = client.post("/api/v1/auth/token", data={"username": "op-a", "password": ADMIN_PASSWORD})
    assert doubled.status_code == 429 and doubled.headers["Retry-After"] == f"{2 * FIRST_WAIT:.0f}"
    clock.now += 2 * FIRST_WAIT
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


def test_the_wait_stops_growing_and_an_old_count_is_forgotten(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    for _ in range(FREE_PER_USER + 30):
        throttle.failed("op-a", "10.0.0.1")
    with pytest.raises(Throttled) as refused:
        throttle.check("op-a", "10.0.0.2")
    assert refused.value.wait_s == LONGEST_WAIT and refused.value.kind == "user"
    clock.now += FORGET_AFTER + 1
    throttle.check("op-a", "10.0.0.2")
    throttle.failed("op-a", "10.0.0.2")
    throttle.check("op-a", "10.0.0.2")  # one failure after a long quiet: free again
