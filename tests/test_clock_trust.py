"""Clock trust: the rule of docs/OPERATIONS.md, with the kernel and marker probes injected."""

from __future__ import annotations

import ctypes
import os
from datetime import UTC, datetime
from pathlib import Path

from agent.clock_trust import STA_UNSYNC, TIME_ERROR, ClockTrust, _libc, _Timex, kernel_ntp_synchronized

BUILD = datetime(2026, 11, 26, tzinfo=UTC)
LATER = datetime(2026, 12, 1, tzinfo=UTC)
BOOT_1970 = datetime(1970, 1, 1, tzinfo=UTC)


def trust(tmp_path: Path, *, synced: bool, now: datetime, marker: bool = False) -> ClockTrust:
    timesyncd = tmp_path / "timesyncd-synchronized"
    if marker:
        timesyncd.touch()
    return ClockTrust(
        True,
        kernel_synced=lambda: synced,
        sync_markers=(timesyncd, tmp_path / "agent-marker"),
        agent_marker=tmp_path / "agent-marker",
        build_date=BUILD,
        now=lambda: now,
    )


def test_kernel_sync_is_trusted_and_leaves_a_marker(tmp_path: Path) -> None:
    state = trust(tmp_path, synced=True, now=LATER).check()
    assert state.trusted
    assert (tmp_path / "agent-marker").exists()


def test_marker_keeps_trust_through_an_ntp_outage(tmp_path: Path) -> None:
    trust(tmp_path, synced=True, now=LATER).check()
    assert trust(tmp_path, synced=False, now=LATER).check().trusted


def test_no_sync_since_boot_is_not_trusted(tmp_path: Path) -> None:
    state = trust(tmp_path, synced=False, now=LATER).check()
    assert not state.trusted
    assert "waiting for NTP" in state.reason


def test_clock_before_build_date_is_never_trusted_without_kernel_sync(tmp_path: Path) -> None:
    state = trust(tmp_path, synced=False, now=BOOT_1970, marker=True).check()
    assert not state.trusted
    assert "before this release" in state.reason


def test_timesyncd_marker_after_build_date_is_trusted(tmp_path: Path) -> None:
    assert trust(tmp_path, synced=False, now=LATER, marker=True).check().trusted


def test_require_sync_false_trusts_any_clock(tmp_path: Path) -> None:
    clock = ClockTrust(False, kernel_synced=lambda: False, now=lambda: BOOT_1970)
    assert clock.check().trusted


def test_real_kernel_probe_reads_the_kernel_clock_state() -> None:
    # The probe returns a bool whatever it reads (a misplaced field, a failed call), so check what
    # it reads against values the kernel fixes, and its answer against the kernel's own verdict.
    libc = _libc()
    assert libc is not None
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    assert 0 <= state <= TIME_ERROR, f"adjtimex failed: {os.strerror(ctypes.get_errno())}"
    # Fields after `status`: right only if every field before them has the kernel's size.
    assert timex.precision == 1  # the kernel always reports 1 µs
    assert timex.tolerance == 500 << 16  # MAXFREQ, 500 ppm with 16 fractional bits
    assert 9000 <= timex.tick <= 11000  # µs per tick at USER_HZ 100; the kernel refuses more than ±10 %
    if timex.status & STA_UNSYNC:  # the kernel's state is TIME_ERROR whenever STA_UNSYNC is set
        assert state == TIME_ERROR
    assert kernel_ntp_synchronized() == (state != TIME_ERROR and not timex.status & STA_UNSYNC)
