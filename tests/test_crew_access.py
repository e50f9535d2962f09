"""What the unit's permissions give the crew (group ``loa``): ``loa`` reads the store whether the
agent runs or not, with no write access at all. Run as root, the test drops to another user in
the store's group the way the kernel sees a crew member, and comes back."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.store import Store

NOBODY = 65534
CREW_GID = 4242  # any group will do: only the kernel's permission checks are under test

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")


@contextmanager
def as_crew_member() -> Iterator[None]:
    groups = os.getgroups()
    os.setgroups([CREW_GID])
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.fixture
def storage_dir() -> Iterator[Path]:
    """storage.dir as the unit makes it: StateDirectoryMode=0750, UMask=0027, group loa."""
    with tempfile.TemporaryDirectory(prefix="loa-crew-") as parent:
        os.chmod(parent, 0o755)
        directory = Path(parent) / "loa"
        directory.mkdir(mode=0o750)
        os.chown(directory, 0, CREW_GID)
        yield directory


def agent_store(directory: Path) -> Store:
    old = os.umask(0o027)
    try:
        store = Store.open(directory)
    finally:
        os.umask(old)
    for path in directory.iterdir():
        os.chown(path, 0, CREW_GID)
    return store


def rows(directory: Path) -> int:
    with as_crew_member():
        store = Store.open_readonly(directory)
        try:
            count: int = store.db.conn.execute("SELECT COUNT(*) FROM state").fetchone()[0]
        finally:
            store.close()
    return count


def test_the_crew_reads_the_store_while_the_agent_runs_and_after_it_stopped(storage_dir: Path) -> None:
    store = agent_store(storage_dir)
    expected = store.db.conn.execute("SELECT COUNT(*) FROM state").fetchone()[0]
    assert {p.name for p in storage_dir.iterdir()} >= {"state.db", "state.db-wal", "state.db-shm"}
    assert rows(storage_dir) == expected  # the agent's WAL index is there to share
    store.close()
    assert not (storage_dir / "state.db-shm").exists()
    assert rows(storage_dir) == expected  # none now, and the crew may not make one


def test_the_crew_cannot_write_the_store(storage_dir: Path) -> None:
    agent_store(storage_dir).close()
    with as_crew_member(), pytest.raises(PermissionError):
        (storage_dir / "state.db").open("ab")


def test_someone_outside_the_group_cannot_read_it(storage_dir: Path) -> None:
    agent_store(storage_dir).close()
    os.chown(storage_dir, 0, 0)
    with as_crew_member(), pytest.raises(PermissionError):
        (storage_dir / "state.db").open("rb")
