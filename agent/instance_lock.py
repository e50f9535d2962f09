"""One agent per storage directory.

Two agents on one store would play the same items twice, fight over the relays and the control
socket.  The daemon holds an exclusive ``flock`` on ``storage.dir/agent.lock`` for its whole life;
the kernel releases it when the process dies, however it dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from foundation.errors import AlreadyRunningError, StoreError

LOCK_NAME = "agent.lock"


class InstanceLock:
    def __init__(self, storage_dir: Path) -> None:
        self.path = storage_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunningError naming the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="ascii")  # noqa: SIM115 (held for the agent's life)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunningError(
                f"another loa-agent (pid {holder}) is already running with storage.dir "
                f"{self.path.parent}; stop it first (sudo systemctl stop loa-agent)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None
