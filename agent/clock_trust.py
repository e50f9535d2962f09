"""Clock trust: nothing scheduled plays on a clock the agent cannot trust.

A Raspberry Pi has no real-time clock: after a power cut it boots at the time it last saved
(fake-hwclock) or at 1970, and only NTP sets it right.  A box that plays on such a clock wakes a
commune at 3 am.  The rule (also in docs/OPERATIONS.md):

The clock is **trusted** when ``clock.require_sync`` is false, or when

1. the kernel reports the clock NTP-synchronized now (``adjtimex``: not ``TIME_ERROR`` and the
   ``STA_UNSYNC`` flag clear; this is what ``timedatectl``'s ``NTPSynchronized`` reads), or
2. the time is later than this release's build date **and** a synchronization has been seen since
   boot: systemd-timesyncd's ``/run/systemd/timesync/synchronized`` exists, or this agent saw the
   kernel synchronized earlier in this boot and left its own marker in ``/run`` (a tmpfs, so the
   marker dies with the boot).  This keeps trust through a short NTP outage after a good sync,
   and never grants it to a clock that has not been set since boot.

Once lost (the kernel flag clears and no marker exists) trust is lost at once.

For a network that blocks NTP, the central server's signed time is a third way (only with
``central.api_url``; agent/central_time.py): a good answer, fresh and within the round-trip bound
and the tolerance, trusts a clock past the build date, with the source ``central``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.events import EventKind
from agent.version import BUILD_DATE

if TYPE_CHECKING:
    from agent.central_time import CentralTime

logger = logging.getLogger(__name__)

TIME_ERROR = 5
STA_UNSYNC = 0x0040
TIMESYNCD_MARKER = Path("/run/systemd/timesync/synchronized")
AGENT_MARKER = Path("/run/loa/clock-synced")
CENTRAL_REASON = "the central server's signed time"  # how a trust from it begins (the state's source)


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: the leading fields we read, then padding for the rest
    # (the kernel writes the full struct; 11 trailing ints are reserved padding).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Looked up once: find_library may run ldconfig, and the loop asks every second.
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def kernel_ntp_synchronized() -> bool:
    """Ask the kernel (read-only ``adjtimex``, modes = 0) whether NTP keeps the clock in sync."""
    libc = _libc()
    if libc is None:
        return False
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        logger.warning("adjtimex failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return bool(state != TIME_ERROR and not timex.status & STA_UNSYNC)


@dataclass(frozen=True)
class ClockState:
    trusted: bool
    reason: str


class ClockTrust:
    """Decides whether the wall clock may drive scheduled playback.  Probes are injectable."""

    def __init__(
        self,
        require_sync: bool,
        *,
        kernel_synced: Callable[[], bool] = kernel_ntp_synchronized,
        sync_markers: tuple[Path, ...] = (TIMESYNCD_MARKER, AGENT_MARKER),
        agent_marker: Path | None = AGENT_MARKER,
        build_date: datetime = BUILD_DATE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        central: CentralTime | None = None,
        record: Callable[[EventKind, str], object] | None = None,
    ) -> None:
        """``central`` asks the central server for its time; ``record`` (the store's ``add_event``)
        keeps what it noted, from the main loop, which is the one that calls :meth:`check`."""
        self.require_sync = require_sync
        self._kernel_synced = kernel_synced
        self._markers = sync_markers
        self._agent_marker = agent_marker
        self._build_date = build_date
        self._now = now
        self.central = central
        self.record = record

    def check(self) -> ClockState:
        if not self.require_sync:
            return ClockState(True, "clock.require_sync is false: clock trusted as it is")
        self._keep_notes()
        if self._kernel_synced():
            self._leave_marker()
            return ClockState(True, "kernel reports the clock NTP-synchronized")
        now = self._now()
        if now <= self._build_date:
            early = f"clock reads {now:%Y-%m-%d %H:%M}Z, before this release was built"
            return ClockState(False, early + self._central_problem())
        verdict = self.central.good() if self.central is not None else None
        if verdict is not None:
            check = verdict.check
            return ClockState(
                True,
                f"{CENTRAL_REASON}: off by {check.offset.total_seconds():+.3f} s"
                f" (± {check.uncertainty.total_seconds():.3f} s) at {verdict.wall:%H:%M:%S}Z",
            )
        seen = next((m for m in self._markers if m.exists()), None)
        if seen is not None:
            return ClockState(True, f"synchronized earlier this boot ({seen})")
        return ClockState(
            False, f"waiting for NTP: no time synchronization seen since boot{self._central_problem()}"
        )

    def _central_problem(self) -> str:
        problem = self.central.problem() if self.central is not None else None
        return f"; central server's time: {problem}" if problem else ""

    def _keep_notes(self) -> None:
        if self.central is None:
            return
        for kind, detail in self.central.drain_notes():
            if self.record is not None:
                self.record(kind, detail)

    def ntp_vouches(self) -> bool:
        """NTP keeps the clock now, or did earlier this boot (a marker): the central server's time
        is then neither asked nor used to set the clock."""
        return self._kernel_synced() or any(marker.exists() for marker in self._markers)

    def _leave_marker(self) -> None:
        if self._agent_marker is None or self._agent_marker.exists():
            return
        try:
            self._agent_marker.parent.mkdir(parents=True, exist_ok=True)
            self._agent_marker.touch()
        except OSError as exc:
            logger.warning("cannot write clock marker %s: %s", self._agent_marker, exc)
