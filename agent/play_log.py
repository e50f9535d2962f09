"""Writing the play log: one row per occurrence, from "asked to play" to its final outcome.

The engine emits one ``Record`` per occurrence (missed, skipped, interrupted, completed, failed);
the agent writes a ``playing`` row when it asks the player to start, adds the actual start when the
player says "playing", and lets the ``Record`` complete the row with its end.  A row left
``playing`` by a power cut is closed as ``interrupted`` at the next start, ending when the agent
was last known alive.  Misses are warnings in
the log too: each says why the occurrence did not play.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from agent.events import EventKind
from agent.schedule_source import Schedule
from agent.store import PlayRecord, Store, iso
from scheduler.engine import Record
from scheduler.items import Outcome
from scheduler.recurrence import Occurrence

logger = logging.getLogger(__name__)

ENDED_OUTCOMES = frozenset({Outcome.COMPLETED, Outcome.FAILED, Outcome.INTERRUPTED})


class PlayLog:
    def __init__(self, store: Store, schedule: Schedule, all_zones: frozenset[str]) -> None:
        self.store = store
        self.schedule = schedule
        self.all_zones = all_zones
        self.started_at: dict[str, datetime] = {}  # key -> when the player said "playing"
        self.asked_at: dict[str, datetime] = {}  # key -> when the player was asked

    def close_unfinished(self) -> None:
        """Rows left 'playing' by a power cut or crash are closed as interrupted.

        The row ends when the agent was last known alive: the ``alive_at`` mark (saved with the
        watermark, at most 10 s apart, while the clock is trusted) or the row's own start if that
        came later.  With no mark at all it ends at its start, and the reason says so.
        """
        alive = self._alive_at()
        tz = self.schedule.config.device.timezone
        for record in self.store.unfinished_plays():
            start = datetime.fromisoformat(record.actual_start or record.scheduled_start)
            if alive is None:
                ended, reason = start, "agent stopped while playing; last known alive time unknown"
            else:
                ended = max(start, alive)
                reason = f"agent stopped while playing; last known alive at {ended.astimezone(tz):%H:%M:%S}"
            self.store.record_play(replace(record, ended=iso(ended), outcome="interrupted", reason=reason))
            self.store.add_event(EventKind.PLAY_CUT_BY_RESTART, f"{record.key}: {reason}")

    def waiting(self, occurrence: Occurrence) -> None:
        """It fell due and waits for the speakers: its row exists from now on, whatever happens."""
        self._write(occurrence, None, "waiting for the speakers", outcome_text="waiting")

    def close_orphan(self, key: str, reason: str) -> None:
        """A row left 'waiting' by the previous run whose item is gone (a crew's `loa play`)."""
        for record in self.store.waiting_plays():
            if record.key == key:
                self.store.record_play(replace(record, outcome=Outcome.SKIPPED.value, reason=reason))

    def _alive_at(self) -> datetime | None:
        saved = self.store.get_state("alive_at")
        try:
            return datetime.fromisoformat(saved) if isinstance(saved, str) else None
        except ValueError:  # a mark this version did not write: as good as none
            return None

    def asked(self, occurrence: Occurrence, now: datetime) -> None:
        self.asked_at[occurrence.key] = now
        self._write(occurrence, None, "")

    def started(self, occurrence: Occurrence, at: datetime) -> None:
        self.started_at[occurrence.key] = at
        self._write(occurrence, None, "", actual=at)

    def since(self, occurrence: Occurrence) -> datetime | None:
        """When ``occurrence`` started playing, else when it was asked to."""
        return self.started_at.get(occurrence.key) or self.asked_at.get(occurrence.key)

    def record(self, action: Record, now: datetime) -> None:
        occurrence = action.occurrence
        started = self.started_at.pop(occurrence.key, None)
        self.asked_at.pop(occurrence.key, None)
        ended = now if action.outcome in ENDED_OUTCOMES else None
        if action.outcome is Outcome.MISSED:
            logger.warning("%s missed: %s", occurrence.key, action.reason)
        self._write(occurrence, action.outcome, action.reason, actual=started, ended=ended)

    def _write(
        self,
        occurrence: Occurrence,
        outcome: Outcome | None,
        reason: str,
        *,
        actual: datetime | None = None,
        ended: datetime | None = None,
        outcome_text: str = "playing",
    ) -> None:
        """Write the row of ``occurrence``; outcome None means it is playing (or ``outcome_text``)."""
        item = occurrence.item
        self.store.record_play(
            PlayRecord(
                key=occurrence.key,
                item_id=item.id,
                audio=item.audio,
                level=item.level.name.lower(),
                zones=tuple(sorted(item.resolved_zones(self.all_zones))),
                scheduled_start=iso(occurrence.start) or "",
                actual_start=iso(actual),
                ended=iso(ended),
                outcome=outcome.value if outcome is not None else outcome_text,
                reason=reason,
                origin=self.schedule.origin_of(item),
            )
        )
