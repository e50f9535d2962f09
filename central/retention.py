"""Retention: what ingest stored, commands and the audit log, older than ``retention.*_days``, deleted in
bounded batches.

Telemetry, events and play-log records (``records``) go by ``received_at``, the central's own clock,
so the disk a stream takes is bounded whatever a box's clock said, and a box's backlog that
arrives late is kept for the whole period.  The play log as reports read it (``playlogs``) goes
by ``scheduled_start``, the time the yearly broadcast report selects on (config refuses less than
400 days for it).  A box's latest state and telemetry are on its ``devices`` row, which is never
touched.  Commands go with their targets' rows and acks (a command to a province is a row and
two acks for each of its boxes) by when they were sent (``commands_days``).  The audit log (who
did what, a few rows per operator action) goes by when it was written (``audit_days``: five years
by default, config refuses less than 400 days).  Bulletins, audio, manifests and users are kept.

Each transaction deletes at most ``batch`` rows, chosen by an index on the time column, so the
single writer SQLite allows is held for a short while only, and the pruner rests between batches
as long as the batch took (at least ``PAUSE``), so that ingest, waiting on that lock, has the
database at least half the time.  On SQLite the freed pages are reused by later rows; the file
does not shrink (docs/CENTRAL.md, "Retention").

``loa-central serve`` runs a pass soon after start and then hourly (:class:`PruneThread`);
``loa-central prune [--dry-run]`` runs one pass, or counts what one would remove.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Delete, Engine, Table, delete, exists, func, select, tuple_

from central import db
from central.config import CentralServerConfig, RetentionConfig
from central.context import utc_now

logger = logging.getLogger(__name__)

BATCH = 5_000  # rows deleted in one transaction at most
PAUSE = 0.05  # seconds between two batches at least (and at least as long as the batch took)
FIRST_AFTER = 60.0  # seconds after start: the backlog of a restart is ingested first
EVERY = 3600.0  # seconds between passes
PROGRESS_EVERY = 300.0  # seconds between log lines of a long pass (the first on an old database)


@dataclass(frozen=True)
class Target:
    """What one stream keeps: the rows of ``table`` that ``where`` picks, older than ``cutoff``, go."""

    name: str  # as logs and the CLI say it
    days: int
    cutoff: datetime
    table: Table
    where: ColumnElement[bool]
    key: tuple[str, ...]  # the primary key's columns


@dataclass(frozen=True)
class Pruned:
    target: Target
    rows: int
    transactions: int
    longest_s: float  # the longest of its transactions


def targets(retention: RetentionConfig, now: datetime) -> list[Target]:
    """What a pass at ``now`` removes, stream by stream."""
    found = []
    records = db.records
    for stream, days in (("telemetry", retention.telemetry_days), ("events", retention.events_days),
                         ("playlog", retention.playlog_days)):  # fmt: skip
        cutoff = now - timedelta(days=days)
        old = (records.c.stream == stream) & (records.c.received_at < cutoff)
        found.append(Target(f"{stream} records", days, cutoff, records, old, ("seq_id",)))
    cutoff = now - timedelta(days=retention.playlog_days)
    played = db.playlogs.c.scheduled_start < cutoff
    found.append(Target("play-log rows", retention.playlog_days, cutoff, db.playlogs, played,
                        ("device_id", "key")))  # fmt: skip
    found += _command_targets(retention.commands_days, now - timedelta(days=retention.commands_days))
    cutoff = now - timedelta(days=retention.audit_days)
    found.append(Target("audit entries", retention.audit_days, cutoff, db.audit, db.audit.c.at < cutoff,
                        ("id",)))  # fmt: skip
    return found


def _command_targets(days: int, cutoff: datetime) -> list[Target]:
    """A command sent before ``cutoff``: its acks, its targets' rows, then itself (their foreign key)."""
    commands, targets_c = db.commands.c, db.command_targets.c
    sent_old = commands.created_at < cutoff
    old = select(commands.id).where(sent_old)
    unreferenced = ~exists().where(targets_c.command_id == commands.id)
    return [
        Target("command acks", days, cutoff, db.acks, db.acks.c.command_id.in_(old), ("id",)),
        Target("command targets", days, cutoff, db.command_targets, targets_c.command_id.in_(old),
               ("command_id", "device_id")),
        Target("commands", days, cutoff, db.commands, sent_old & unreferenced, ("id",)),
    ]  # fmt: skip


def _batch_delete(target: Target, batch: int) -> Delete:
    """``DELETE ... WHERE key IN (SELECT key ... WHERE old LIMIT batch)``: both databases take it."""
    table = target.table
    if len(target.key) == 1:
        column = table.c[target.key[0]]
        return delete(table).where(column.in_(select(column).where(target.where).limit(batch)))
    columns = [table.c[name] for name in target.key]
    return delete(table).where(tuple_(*columns).in_(select(*columns).where(target.where).limit(batch)))


class Pruner:
    def __init__(self, engine: Engine, retention: RetentionConfig, clock: Callable[[], datetime] = utc_now,
                 *, batch: int = BATCH, pause: float = PAUSE, progress_every: float = PROGRESS_EVERY,
                 ) -> None:  # fmt: skip
        self.engine, self.retention, self.clock = engine, retention, clock
        self.batch, self.pause, self.progress_every = batch, pause, progress_every

    def count(self) -> list[tuple[Target, int]]:
        """What a pass now would remove, without removing it."""
        found = []
        with self.engine.connect() as conn:
            for target in targets(self.retention, self.clock()):
                query = select(func.count()).select_from(target.table).where(target.where)
                found.append((target, int(conn.execute(query).scalar_one())))
        return found

    def prune(self, stop: threading.Event | None = None) -> list[Pruned]:
        """One pass: every stream's old rows, ``batch`` at a time, until none is left or ``stop``."""
        stop = stop or threading.Event()
        done = []
        for target in targets(self.retention, self.clock()):
            pruned = self._prune(target, stop)
            done.append(pruned)
            if pruned.rows:
                logger.info("retention: removed %d %s older than %d days (before %s) in %d transactions, "
                            "the longest %.0f ms", pruned.rows, target.name, target.days,
                            target.cutoff.isoformat(timespec="seconds"), pruned.transactions,
                            pruned.longest_s * 1000)  # fmt: skip
        if not any(pruned.rows for pruned in done):
            logger.debug("retention: nothing older than the limits")
        return done

    def _prune(self, target: Target, stop: threading.Event) -> Pruned:
        statement = _batch_delete(target, self.batch)
        rows = transactions = 0
        longest = 0.0
        noted = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            with self.engine.begin() as conn:
                removed = conn.execute(statement).rowcount
            took = time.monotonic() - started
            longest = max(longest, took)
            rows += removed
            transactions += 1
            if time.monotonic() - noted >= self.progress_every:
                logger.info("retention: %d %s removed so far, going on", rows, target.name)
                noted = time.monotonic()
            # rest at least as long as the batch took: ingest gets the database half the time or more
            if removed < self.batch or stop.wait(max(self.pause, took)):
                break
        return Pruned(target, rows, transactions, longest)


class PruneThread:
    """Runs a pass ``first_after`` seconds after start, then every ``every`` seconds, until stopped."""

    def __init__(self, pruner: Pruner, *, first_after: float = FIRST_AFTER, every: float = EVERY,
                 after: threading.Event | None = None) -> None:  # fmt: skip
        self.pruner, self.first_after, self.every = pruner, first_after, every
        # set when the indexes the passes delete by are built (serve builds an old database's after start)
        self.after = after
        self.stopping = threading.Event()
        self.passes = 0  # passes finished, for tests
        self.passed = threading.Event()  # set at the end of each pass
        self.thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self.thread.start()
        retention = self.pruner.retention
        logger.info("retention started: telemetry %d days, events %d days, play log %d days, commands %d "
                    "days, audit log %d days; a pass every %g s", retention.telemetry_days,
                    retention.events_days, retention.playlog_days, retention.commands_days,
                    retention.audit_days, self.every)  # fmt: skip

    def _run(self) -> None:
        while self.after is not None and not self.after.wait(1.0):
            if self.stopping.is_set():
                return
        wait = self.first_after
        while not self.stopping.wait(wait):
            try:
                self.pruner.prune(self.stopping)
            except Exception:  # the database is away or refused: the next pass tries again
                logger.exception("retention pass failed; the next one in %g s", self.every)
            self.passes += 1
            self.passed.set()
            wait = self.every

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        logger.info("retention stopped")


def add_parser(sub: Any) -> None:
    """``loa-central prune [--dry-run]``."""
    parser = sub.add_parser(
        "prune", help="remove records, commands and audit entries older than retention.*_days, once"
    )
    parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")


def run(config: CentralServerConfig, args: argparse.Namespace) -> int:
    """One pass (or its count with ``--dry-run``), printed one line per stream."""
    engine = db.open_engine(config.database_url)
    try:
        pruner = Pruner(engine, config.retention)
        if args.dry_run:
            for target, rows in pruner.count():
                print(f"would remove {rows} {target.name} older than {target.days} days "
                      f"(before {target.cutoff.isoformat(timespec='seconds')})")  # fmt: skip
        else:
            for pruned in pruner.prune():
                target = pruned.target
                print(f"removed {pruned.rows} {target.name} older than {target.days} days "
                      f"(before {target.cutoff.isoformat(timespec='seconds')}) in {pruned.transactions} "
                      f"transactions, the longest {pruned.longest_s * 1000:.0f} ms")  # fmt: skip
    finally:
        engine.dispose()
    return 0
