"""The retained ``state`` message (docs/PROTOCOL.md): what the box reports, and when it says it.

The main loop hands the link a :class:`StateFacts` each pass (a typed snapshot, built by
:meth:`agent.runtime.Agent.state_facts`); :class:`StatePublisher` publishes it retained when it
differs from what was last published, at most once a second, and at once when asked (on
connecting, for a ``status`` or ``sync_now`` command).  A change held back by the one-second rule
is published on a later pass: the loop runs at least once a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.clock_trust import CENTRAL_REASON
from protocol.messages import Playing, StateMessage

MIN_INTERVAL = timedelta(seconds=1)


@dataclass(frozen=True)
class StateFacts:
    """Everything ``state`` says except its session and time."""

    playing: Playing | None
    relays_on: tuple[str, ...]
    volume: int
    schedules: Mapping[str, str] = field(default_factory=dict)
    clock_trusted: bool = False
    clock_source: str | None = None

    def message(self, session: int, at: datetime) -> StateMessage:
        return StateMessage(
            session, at, self.playing, self.relays_on, self.volume, dict(self.schedules),
            self.clock_trusted, self.clock_source,
        )  # fmt: skip


def clock_source(trusted: bool, reason: str) -> str | None:
    """The protocol's clock source token for a :class:`agent.clock_trust.ClockState`."""
    if not trusted:
        return None
    if reason.startswith(CENTRAL_REASON):
        return "central"
    return "unchecked" if "require_sync is false" in reason else "ntp"


class StatePublisher:
    """Decides when ``state`` goes out; ``send`` publishes one (False when the link is down)."""

    def __init__(self, send: Callable[[str], bool]) -> None:
        self._send = send
        self._published: StateFacts | None = None
        self._at: datetime | None = None
        self._forced = True  # the first state after connecting goes out at once

    def force(self) -> None:
        self._forced = True

    def offer(self, facts: StateFacts | None, session: int, now: datetime) -> bool:
        """Publish ``facts`` if due; whether it was published."""
        if facts is None:
            return False
        if not self._forced:
            if facts == self._published:
                return False
            if self._at is not None and timedelta(0) <= now - self._at < MIN_INTERVAL:
                return False
        if not self._send(facts.message(session, now).to_json()):
            return False
        self._published, self._at, self._forced = facts, now, False
        return True
