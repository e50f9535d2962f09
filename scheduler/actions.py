"""What the engine asks the agent to do, and the outcomes it records in the play log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.items import Outcome
from scheduler.recurrence import Occurrence

__all__ = ["Action", "Interrupt", "Outcome", "Queued", "Record", "Start"]


@dataclass(frozen=True)
class Start:
    """Start playing ``occurrence`` now; ``late_by`` is how long after its scheduled start."""

    occurrence: Occurrence
    late_by: timedelta


@dataclass(frozen=True)
class Queued:
    """``occurrence`` fell due and waits for the speakers (write its row now: a restart must not
    lose it)."""

    occurrence: Occurrence


@dataclass(frozen=True)
class Interrupt:
    """Stop the playing ``occurrence`` now (a ``Record`` of it follows; do not log it twice)."""

    occurrence: Occurrence
    reason: str


@dataclass(frozen=True)
class Record:
    """Write one play-log record: the engine emits one per occurrence, whatever its outcome."""

    occurrence: Occurrence
    outcome: Outcome
    reason: str = ""


Action = Start | Queued | Interrupt | Record
