"""Clock trust: the rule of docs/OPERATIONS.md, with the kernel and marker probes injected."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.clock_trust import ClockTrust, kernel_ntp_synchronized

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


def test_real_kernel_probe_answers_a_bool() -> None:
    assert isinstance(kernel_ntp_synchronized(), bool)
