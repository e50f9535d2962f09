"""Fixtures the agent and central tests share: the suite's Mosquitto, its PostgreSQL, the central's key
and HTTP side, a central server on each database and a client of it.

A module that needs another shape defines a fixture of the same name, which takes precedence here."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.central_stand_in import Http, serve_http
from tests.mqtt_broker import Broker, run_broker
from tests.postgres_server import Postgres, run_postgres

if TYPE_CHECKING:  # only the central server's tests load FastAPI and the central package
    from fastapi.testclient import TestClient

    from central.context import Central


@pytest.fixture(autouse=True)
def _sigpipe_ignored_again() -> Iterator[None]:
    """``loa``'s main() restores the default SIGPIPE, as a command-line tool should; called in this
    process by a test, it would stay so for the rest of the run, and the next write to a socket that
    a peer has closed (a broker a test kills, say) would kill the whole run silently."""
    before = signal.getsignal(signal.SIGPIPE)
    yield
    signal.signal(signal.SIGPIPE, before)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server per test module (starting one takes seconds)."""
    yield from run_postgres()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own."""
    yield from run_broker(tmp_path)


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    """The central server's signing key; its public half is ``central.pub`` beside the agent's config."""
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "central.pub").write_bytes(pem)
    return private


@pytest.fixture
def http() -> Iterator[Http]:
    """The central server's HTTP side (manifests and audio) on a free port."""
    yield from serve_http()


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Central]:
    """A central.context.Central (``make_central``'s records) on a SQLite file, then on the module's
    PostgreSQL: every test that uses it runs on both databases."""
    from tests.central_harness import central_on_database

    with central_on_database(request, tmp_path) as made:
        yield made


@pytest.fixture
def client(central: Central) -> Iterator[TestClient]:
    """The API and the pages of ``central`` (the one above, or the module's own), redirects not
    followed so that a page's 303 is seen; a module whose client differs defines its own."""
    from fastapi.testclient import TestClient  # only the central server's tests load FastAPI

    from central.app import create_app

    with TestClient(create_app(central), follow_redirects=False) as test_client:
        yield test_client
