"""Clock trust from the central server's signed time, against a real HTTP server signing with a
test key: a good answer trusts the clock (source ``central``); a forged, replayed, slow or
unreachable answer, or a clock too far off, does not, and says why in an event.  The system clock
is never touched: the box's wall clock and the clock setter are the test's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.central_time import CentralTime
from agent.clock_trust import ClockTrust
from agent.events import EventKind
from agent.link_state import clock_source
from tests.time_server import TimeServer, run_time_server

DEVICE = "test-box-01"
BUILD = datetime(2026, 1, 1, tzinfo=UTC)


class BoxClock:
    """The box's wall clock: the real one shifted by ``shift``; ``step`` is the clock setter."""

    def __init__(self, *, can_set: bool = True) -> None:
        self.shift = timedelta(0)
        self.can_set = can_set
        self.steps: list[datetime] = []

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def step(self, moment: datetime) -> None:
        if not self.can_set:
            raise PermissionError(1, "Operation not permitted")
        self.steps.append(moment)
        self.shift = moment - datetime.now(UTC)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def server(key: Ed25519PrivateKey) -> Iterator[TimeServer]:
    yield from run_time_server(key)


def make(
    server: TimeServer,
    key: Ed25519PrivateKey,
    box: BoxClock,
    *,
    set_clock: bool = False,
    round_trip: float = 2.0,
    ntp: bool = False,
) -> tuple[CentralTime, ClockTrust, list[tuple[EventKind, str]]]:
    central = CentralTime(
        server.api_url, DEVICE, [key.public_key()], max_round_trip=timedelta(seconds=round_trip),
        tolerance=timedelta(seconds=2), set_clock=set_clock, ntp_synced=lambda: ntp,
        step=box.step, wall=box.now,
    )  # fmt: skip
    events: list[tuple[EventKind, str]] = []
    clock = ClockTrust(
        True, kernel_synced=lambda: False, sync_markers=(), agent_marker=None, build_date=BUILD,
        now=box.now, central=central, record=lambda kind, detail: events.append((kind, detail)),
    )  # fmt: skip
    return central, clock, events


def test_a_good_answer_trusts_the_clock_with_source_central(
    server: TimeServer, key: Ed25519PrivateKey
) -> None:
    central, clock, events = make(server, key, BoxClock())
    assert not clock.check().trusted
    assert central.ask_once() == "trusted"
    state = clock.check()
    assert state.trusted and clock_source(state.trusted, state.reason) == "central"
    assert "central server's signed time: off by" in state.reason
    assert events == [] and len(server.nonces) == 1
    status = central.status()
    assert status["trusted"] and abs(status["offset_ms"]) < 500 and status["round_trip_ms"] < 2000


@pytest.mark.parametrize(
    ("mode", "reason", "kind"),
    [
        ("foreign-key", "bad_signature", EventKind.CLOCK_CENTRAL_REFUSED),
        ("replay", "stale_nonce", EventKind.CLOCK_CENTRAL_REFUSED),
        ("error", "unreachable", EventKind.CLOCK_CENTRAL_UNUSABLE),
        ("huge", "malformed", EventKind.CLOCK_CENTRAL_REFUSED),
        ("slow", "too_slow", EventKind.CLOCK_CENTRAL_UNUSABLE),
        ("trickle", "unreachable", EventKind.CLOCK_CENTRAL_UNUSABLE),
    ],
)
def test_a_bad_answer_does_not_trust_the_clock_and_says_why_once(
    server: TimeServer, key: Ed25519PrivateKey, mode: str, reason: str, kind: EventKind
) -> None:
    central, clock, events = make(server, key, BoxClock(), round_trip=0.3)
    if mode == "replay":  # a genuine answer to an earlier question, recorded and replayed
        assert central.ask_once() == "trusted"
        central, clock, events = make(server, key, BoxClock(), round_trip=0.3)
    server.mode, server.delay = mode, 0.5
    assert central.ask_once() == reason
    assert central.ask_once() == reason
    state = clock.check()
    assert not state.trusted and f"central server's time: {reason}" in state.reason
    assert [k for k, _ in events] == [kind], "the same refusal again is not a new event"
    assert events[0][1].startswith(reason) and kind.severity.value == "warning"
    assert kind.security == (kind is EventKind.CLOCK_CENTRAL_REFUSED)


def test_an_unreachable_server_does_not_trust_the_clock(key: Ed25519PrivateKey) -> None:
    with TimeServer(key) as server:
        url = server.api_url
    central = CentralTime(
        url, DEVICE, [key.public_key()], max_round_trip=timedelta(seconds=1), tolerance=timedelta(seconds=2),
        set_clock=False, ntp_synced=lambda: False,
    )  # fmt: skip
    assert central.ask_once() == "unreachable" and central.good() is None


def test_a_clock_too_far_off_stays_untrusted_when_it_may_not_be_set(
    server: TimeServer, key: Ed25519PrivateKey
) -> None:
    server.skew = timedelta(minutes=-7)  # the box is 7 minutes ahead (a fake-hwclock after a cut)
    for set_clock, can_set in ((False, True), (True, False)):
        central, clock, events = make(server, key, box := BoxClock(can_set=can_set), set_clock=set_clock)
        assert central.ask_once() == "offset_too_large"
        assert not clock.check().trusted and box.steps == []
        [(kind, detail)] = events
        assert kind is EventKind.CLOCK_CENTRAL_UNUSABLE and re.search(r"off by -4(19\.9|20\.0)", detail)
        assert ("cannot be set" in detail) == (not can_set)


def test_a_clock_too_far_off_is_set_and_then_confirmed(server: TimeServer, key: Ed25519PrivateKey) -> None:
    box = BoxClock()
    server.skew = timedelta(hours=3)
    central, clock, events = make(server, key, box, set_clock=True)
    assert central.ask_once() == "stepped"
    assert not clock.check().trusted, "a set clock is trusted only once an answer confirms it"
    assert len(box.steps) == 1 and abs(box.shift - timedelta(hours=3)) < timedelta(seconds=1)
    assert central.ask_once() == "trusted" and clock.check().trusted
    assert [kind for kind, _ in events] == [EventKind.CLOCK_SET]


def test_a_clock_ntp_synchronized_this_boot_is_never_set(
    server: TimeServer, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    box = BoxClock()
    server.skew = timedelta(hours=3)
    central, _, _ = make(server, key, box, set_clock=True, ntp=True)
    assert central.ask_once() == "offset_too_large" and box.steps == []
    marker = tmp_path / "timesyncd-synchronized"
    clock = ClockTrust(True, kernel_synced=lambda: False, sync_markers=(marker,), agent_marker=None)
    assert not clock.ntp_vouches()
    marker.touch()
    assert clock.ntp_vouches()


def test_a_step_that_is_not_confirmed_is_not_repeated_at_once(
    server: TimeServer, key: Ed25519PrivateKey
) -> None:
    box = BoxClock()
    server.skew = timedelta(hours=3)
    central, clock, events = make(server, key, box, set_clock=True)
    assert central.ask_once() == "stepped"
    server.skew = timedelta(hours=6)  # the central server's clock jumped: no second step now
    assert central.ask_once() == "offset_too_large" and not clock.check().trusted
    assert len(box.steps) == 1
    assert [kind for kind, _ in events] == [EventKind.CLOCK_SET, EventKind.CLOCK_CENTRAL_UNUSABLE]


def test_trust_is_lost_when_a_later_answer_finds_the_clock_off_or_the_clock_is_stepped(
    server: TimeServer, key: Ed25519PrivateKey
) -> None:
    box = BoxClock()
    central, clock, _ = make(server, key, box)
    assert central.ask_once() == "trusted" and clock.check().trusted
    server.skew = timedelta(seconds=30)
    assert central.ask_once() == "offset_too_large" and not clock.check().trusted
    server.skew = timedelta(0)
    assert central.ask_once() == "trusted" and clock.check().trusted
    box.shift = timedelta(seconds=5)  # someone set the clock since the answer
    assert not clock.check().trusted


def test_the_thread_asks_at_start_and_trusts_the_clock(server: TimeServer, key: Ed25519PrivateKey) -> None:
    central, clock, _ = make(server, key, BoxClock())
    central.start()
    try:
        wait_for(lambda: clock.check().trusted, 10)
    finally:
        central.stop()


def wait_for(what: Callable[[], bool], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.02)
