"""What a telemetry sample costs the main loop as the spool grows (agent/spool_policy.py).

    .venv/bin/python -m bench.spool_bench [--samples 300]

Each sample is one ``Store.add_telemetry`` on a real SQLite file (WAL, synchronous=FULL): the
insert and the thinning, in one transaction, on the main loop's thread.  Measured with the link
down and a spool that already holds, at the default 60 s interval:

* ``empty``: a short outage (nothing older than a day, no thinning to do);
* ``ten days``: a ten-day outage, thinned by the rule (about 2,100 samples waiting);
* ``full``: five months away, at the cap of 5,000 samples waiting: the oldest dropped at every
  sample.

The outage before the timing is written in one transaction (a sample a minute of simulated time)
and thinned once by the policy, which leaves what sample-by-sample thinning leaves; then
``--samples`` more are timed one by one; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.spool_policy import SPOOL_POLICY, thin_telemetry
from agent.store import Store, iso

START = datetime(2026, 1, 1, tzinfo=UTC)
DATA = {"cpu_temp_c": 51.5, "load_1m": 0.42, "mem_used_pct": 38.0, "disk_free_mb": 11234,
        "uptime_s": 86400, "clock_trusted": True, "clock_source": "ntp", "relays_on": []}  # fmt: skip
SPOOLS = {"empty": 0, "ten days": 10 * 24 * 60, "full": 150 * 24 * 60}  # minutes of outage before timing


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def one_spool(minutes: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as directory:
        store = Store.open(Path(directory))
        try:
            _outage(store, minutes)
            timings = []
            for index in range(samples):
                moment = START + timedelta(minutes=minutes + index)
                begun = time.perf_counter()
                store.add_telemetry(moment, DATA)
                timings.append((time.perf_counter() - begun) * 1000)
            waiting = store.undelivered_counts()["telemetry"]
        finally:
            store.close()
    return {
        "waiting": waiting,
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(_percentile(timings, 0.99), 2),
    }


def _outage(store: Store, minutes: int) -> None:
    text = json.dumps(DATA)
    rows = [(iso(START + timedelta(minutes=m)), int((START + timedelta(minutes=m)).timestamp()), text)
            for m in range(minutes)]  # fmt: skip
    with store.db.conn:
        store.db.conn.executemany("INSERT INTO telemetry (at, epoch, data) VALUES (?, ?, ?)", rows)
        thin_telemetry(store.db.conn, 0, whole=True)


def run(samples: int = 300) -> dict[str, Any]:
    result = {name: one_spool(minutes, samples) for name, minutes in SPOOLS.items()}
    load = round(os.getloadavg()[0], 1)  # the machine's load: a shared one inflates the timings
    return {
        "samples": samples,
        "max_samples": SPOOL_POLICY.max_samples,
        "spools": result,
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spool_bench")
    parser.add_argument("--samples", type=int, default=300)
    print(json.dumps(run(parser.parse_args().samples), indent=2))


if __name__ == "__main__":
    main()
