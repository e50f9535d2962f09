"""Retention on SQLite: a pass removing 1,000,000 telemetry records while ingest writes beside it.

    .venv/bin/python -m bench.retention_bench [--rows 1000000]   rewrites its section of docs/BENCHMARKS.md
    .venv/bin/python -m bench.run_all --only retention            the same

A real SQLite file made by ``db.open_engine`` (WAL, synchronous=FULL, the server's indexes) holds
``rows`` telemetry records received 31 to 60 days ago, spread over 1,000 boxes, and a tenth as
many from the last 30 days.  ``central.retention.Pruner`` with the defaults (30 days, 10,000 rows
a transaction, 50 ms between batches) removes the old ones, while a thread writes as ingest
does: 100 records in one transaction, every 20 ms (about 5,000 records a second, more than 1,000
boxes send).  Measured: rows removed a second, the pass's transactions and the longest, and how
long each of the writer's transactions took from begin to commit during the pass (what ingest
waits for the database), as p50, p99 and max, against the same writer with no pass running.
Then as many new records are written again, to see the file take them in the pages the pass freed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select

from central import db
from central.config import RetentionConfig
from central.retention import BATCH, PAUSE, Pruner

HEADING = "## Retention on SQLite (central)"
NOW = datetime(2026, 11, 27, tzinfo=UTC)
BOXES = 1000
DATA = {"cpu_temp_c": 51.5, "load_1m": 0.42, "mem_used_pct": 38.0, "disk_free_mb": 11234,
        "uptime_s": 86400, "clock_trusted": True, "clock_source": "ntp", "relays_on": []}  # fmt: skip
CHUNK = 50_000  # rows a transaction while filling
WRITER_ROWS, WRITER_EVERY = 100, 0.02
_WRITTEN = itertools.count(10**9)  # the writers' record seqs, unique across writers


def _fill(engine: Engine, rows: int, newest: datetime, days: float, first: int) -> None:
    span = timedelta(days=days) / rows
    for start in range(0, rows, CHUNK):
        batch = []
        for n in range(start, min(rows, start + CHUNK)):
            at = newest - span * n
            device = f"xa-{n % BOXES:04d}"
            batch.append({"stream": "telemetry", "record_id": f"{device}:{first + n}", "device_id": device,
                          "seq": first + n, "at": at, "data": DATA, "received_at": at})  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(db.records), batch)


class Writer:
    """Ingest's shape of work: ``WRITER_ROWS`` new records a transaction, every ``WRITER_EVERY`` s."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(WRITER_EVERY):
            seqs = [next(_WRITTEN) for _ in range(WRITER_ROWS)]
            rows = [{"stream": "telemetry", "record_id": f"xa-new:{seq}", "device_id": "xa-new", "seq": seq,
                     "at": NOW, "data": DATA, "received_at": NOW} for seq in seqs]  # fmt: skip
            started = time.monotonic()
            with self.engine.begin() as conn:
                conn.execute(insert(db.records), rows)
            self.waits.append(time.monotonic() - started)

    def during(self, seconds: float) -> list[float]:
        self.thread.start()
        self.stop.wait(seconds)
        return self.finish()

    def finish(self) -> list[float]:
        self.stop.set()
        self.thread.join()
        return self.waits


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"count": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip


def run(rows: int = 1_000_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loa-retention-") as directory:
        path = Path(directory) / "central.db"
        engine = db.open_engine(f"sqlite:///{path}")
        _fill(engine, rows, NOW - timedelta(days=31), 29, 0)
        _fill(engine, rows // 10, NOW - timedelta(minutes=1), 29.9, rows)
        size_before = path.stat().st_size
        alone = Writer(engine).during(10.0)
        load = os.getloadavg()[0]
        writer = Writer(engine)
        writer.thread.start()
        started = time.monotonic()
        [telemetry, *_] = Pruner(engine, RetentionConfig(), lambda: NOW).prune()
        elapsed = time.monotonic() - started
        during = writer.finish()
        with engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(db.records)).scalar_one()
        size_after = path.stat().st_size
        _fill(engine, rows, NOW, 29, 3 * rows)  # as many new records: into the freed pages
        size_refilled = path.stat().st_size
        engine.dispose()
        return {
            "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "rows": rows, "removed": telemetry.rows,
            "kept": rows // 10, "left": left, "seconds": round(elapsed, 1),
            "rows_per_s": round(telemetry.rows / elapsed), "transactions": telemetry.transactions,
            "longest_ms": round(telemetry.longest_s * 1000, 1), "alone": _spread(alone),
            "during": _spread(during), "size_mb": round(size_before / 2**20),
            "size_after_mb": round(size_after / 2**20), "size_refilled_mb": round(size_refilled / 2**20),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
        }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    alone, during = result["alone"], result["during"]
    return f"""{HEADING}

Measured {result["measured"]} with `bench/retention_bench.py` (reproduce with `.venv/bin/python -m
bench.run_all --only retention`, about three minutes, which rewrites this section only); the machine
has 2 cores shared with other work (load average, 1 min, {result["load_before"]} before the pass,
{result["load_after"]} after). A real SQLite file as the server opens it (WAL, `synchronous=FULL`,
{result["size_mb"]} MB) holds {result["rows"]:,} telemetry records received 31 to 60 days ago from
1,000 boxes and {result["kept"]:,} from the last 30 days. One pass of `central.retention.Pruner` with
the defaults (30 days, {BATCH:,} rows a transaction, a rest between batches as long as the batch
took, at least {PAUSE * 1000:.0f} ms) removed
{result["removed"]:,} records in {result["seconds"]} s, **{result["rows_per_s"]:,} records a
second**, in {result["transactions"]} transactions, the longest **{result["longest_ms"]} ms**;
{result["left"]:,} records were left (the recent ones and the writer's).

Meanwhile a thread wrote as ingest does ({WRITER_ROWS} records a transaction every
{WRITER_EVERY * 1000:.0f} ms); each of its transactions, begin to commit, which includes waiting
for the pass's batch to end:

| writer's transactions | count | p50 | p99 | max |
|---|---|---|---|---|
| alone (10 s) | {_row(alone)} |
| during the pass | {_row(during)} |

The file: {result["size_mb"]} MB before the pass, {result["size_after_mb"]} MB after it (SQLite does not
shrink a file; the writer added its records), {result["size_refilled_mb"]} MB after {result["rows"]:,}
new records were written into it: {result["size_refilled_mb"] - result["size_after_mb"]} MB more for
records that took about {result["size_mb"] * result["rows"] // (result["rows"] + result["kept"])} MB
when the file was first filled, since they went into the pages the pass freed.

Why the rest grows with the batch: a first version with 10,000 rows a transaction and a fixed 50 ms
rest, measured the same way (2026-11-26 23:24 UTC), removed 40,752 records a second, but the
writer beside it waited p50 33.3 ms, p99 240.7 ms: the pass held the database four fifths of the
time.
"""


def _row(spread: dict[str, float]) -> str:
    return f"{spread['count']} | {spread['p50_ms']} ms | {spread['p99_ms']} ms | {spread['max_ms']} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rows", type=int, default=1_000_000, help="old records to remove (%(default)s)")
    args = parser.parse_args(argv)
    from bench.run_all import OUT, with_section

    result = run(args.rows)
    print(result)
    OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), HEADING, render(result)), encoding="utf-8")
    print(f"rewrote {HEADING!r} in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
