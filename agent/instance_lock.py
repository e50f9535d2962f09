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
    def __init__(self, storage_dir: Path, fallback_dir: Path | None = None) -> None:
        self.path = storage_dir / LOCK_NAME
        # On a read-only card the lock file cannot be created: lock one in the runtime dir instead.
        self._fallback = fallback_dir / LOCK_NAME if fallback_dir is not None else None
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        errors = []
        for path, mode in ((self.path, "a+"), (self.path, "r"), (self._fallback, "a+")):
            if path is None:
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                return open(path, mode, encoding="ascii")
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
        raise StoreError("cannot open a lock file: " + "; ".join(errors))

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunningError naming the holder's pid."""
        handle = self._open()
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
        if handle.writable():
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None
