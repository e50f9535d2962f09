"""sd_notify without libsystemd: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.

systemd passes ``$NOTIFY_SOCKET`` (a path, or an abstract name starting with '@') to a
``Type=notify`` service.  Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Half the watchdog period systemd asked for, in seconds, or None without a watchdog."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2_000_000

    def notify(self, *fields: str) -> None:
        if self._sock is None or not self._address:
            return
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            self._sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            logger.warning("sd_notify to %s failed: %s", self._address, exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
