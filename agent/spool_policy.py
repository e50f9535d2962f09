"""How the outbox stays bounded through a long outage (docs/PROTOCOL.md, "The spool").

The store keeps every record until the link has delivered it.  A box cut off for weeks must not
fill its card, and what it must never lose is its proof of play and its signs of tampering, so
the outbox gives way in this order:

1. **Telemetry is thinned** once the outage is longer than a day: waiting samples more than a day
   older than the newest are thinned to one per 15 minutes, those more than 7 days older to one
   per hour (the first sample of each period is kept; periods nest).  Past ``max_samples``
   waiting samples the oldest are dropped (at the default 60 s: after about 5 months away).
2. **Ordinary events** go next, only past the events cap (``Retention.events_max_rows``): the
   oldest info events first, then the oldest warnings and errors.
3. **The play log and security events** (``EventKind.security``: refused commands, schedules and
   time answers) are never dropped before they are delivered.

Functions here run inside the store's transaction on its connection; the SQL names are ours.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta

from agent.events import SECURITY


@dataclass(frozen=True)
class SpoolPolicy:
    thin_after: timedelta = timedelta(days=1)  # older than this (before the newest sample) ...
    coarse: timedelta = timedelta(minutes=15)  # ... one sample per 15 minutes
    thin_more_after: timedelta = timedelta(days=7)  # older than this ...
    coarser: timedelta = timedelta(hours=1)  # ... one per hour
    max_samples: int = 5_000  # past this many waiting samples the oldest go (~5 months)
    keep_delivered: int = 60  # delivered samples kept for a look on the box


SPOOL_POLICY = SpoolPolicy()


def thin_telemetry(
    conn: sqlite3.Connection, cursor: int, policy: SpoolPolicy = SPOOL_POLICY, *, whole: bool = False
) -> int:
    """Apply ``policy`` to the ``telemetry`` table, whose rows up to ``cursor`` are delivered;
    returns how many rows went.  After each new sample only the periods it moved past a cutoff
    are thinned; ``whole`` thins every waiting sample (hourly retention, and a spool written
    otherwise)."""
    removed = conn.execute(
        "DELETE FROM telemetry WHERE id <= ? AND id NOT IN "
        "(SELECT id FROM telemetry WHERE id <= ? ORDER BY id DESC LIMIT ?)",
        [cursor, cursor, policy.keep_delivered],
    ).rowcount
    (oldest, newest, last) = conn.execute(
        "SELECT MIN(epoch), MAX(epoch), MAX(id) FROM telemetry WHERE id > ?", [cursor]
    ).fetchone()
    if newest is None:
        return removed
    # Samples older than the cutoff of the sample before this one were thinned with it: only the
    # periods since then are looked at, so a sample costs the same through a long outage.
    (previous,) = conn.execute(
        "SELECT MAX(epoch) FROM telemetry WHERE id > ? AND id < ?", [cursor, last]
    ).fetchone()
    for age, width in ((policy.thin_after, policy.coarse), (policy.thin_more_after, policy.coarser)):
        cutoff, seconds = newest - int(age.total_seconds()), int(width.total_seconds())
        if oldest >= cutoff:
            break  # nothing waits that long
        low = (
            oldest
            if previous is None or whole
            else (previous - int(age.total_seconds())) // seconds * seconds
        )
        removed += conn.execute(
            "DELETE FROM telemetry WHERE id > :cursor AND epoch >= :low AND epoch < :cutoff AND id NOT IN "
            "(SELECT MIN(id) FROM telemetry WHERE id > :cursor AND epoch >= :low AND epoch < :cutoff"
            " GROUP BY epoch / :width)",
            {"cursor": cursor, "low": low, "cutoff": cutoff, "width": seconds},
        ).rowcount
    (waiting,) = conn.execute("SELECT COUNT(*) FROM telemetry WHERE id > ?", [cursor]).fetchone()
    if waiting > policy.max_samples:
        removed += conn.execute(
            "DELETE FROM telemetry WHERE id IN (SELECT id FROM telemetry WHERE id > ? ORDER BY id LIMIT ?)",
            [cursor, waiting - policy.max_samples],
        ).rowcount
    return removed


def droppable_events(which: str) -> str:
    """The SQL condition for events the cap may drop: ``which`` and never a security event."""
    kinds = ", ".join(f"'{kind.value}'" for kind in sorted(SECURITY))
    return f"({which}) AND kind NOT IN ({kinds})"
