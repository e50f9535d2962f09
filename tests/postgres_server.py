"""A real PostgreSQL in a temporary directory, for the central store tests: initdb, pg_ctl, gone after.

PostgreSQL refuses to run as root, so when the suite runs as root the cluster belongs to ``nobody``
and its programs run through ``runuser``.  It listens on a free loopback port only, with trust
authentication (nothing else can reach it), and is stopped with ``pg_ctl stop -m immediate``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_broker import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self, bin_dir: Path, directory: Path) -> None:
        self.bin_dir, self.directory = bin_dir, directory
        self.data = directory / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "nobody", "--"]
            nobody = pwd.getpwnam("nobody")
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://loa@127.0.0.1:{self.port}/loa"

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, str(self.bin_dir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "loa", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "loa", "loa")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


def run_postgres() -> Iterator[Postgres]:
    """The body of a ``postgres`` fixture: a started cluster, stopped and removed at the end."""
    bin_dir = _bin_dir()
    if bin_dir is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql, in the Makefile's APT_PACKAGES)")
    # Not under pytest's tmp_path: 'nobody' must be able to reach it, and /tmp is open to all.
    directory = Path(tempfile.mkdtemp(prefix="loa-pg-"))
    directory.chmod(0o700)
    server = Postgres(bin_dir, directory)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(AssertionError):  # it never started
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
