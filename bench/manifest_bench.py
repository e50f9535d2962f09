"""A 10,000-item manifest verified and reconciled against the cache (issue 8): the one manifest bench.

    .venv/bin/python -m bench.run_all --only manifest    rewrites its section of docs/BENCHMARKS.md
    .venv/bin/python -m bench.manifest_bench [--compare REV]   the same (REV '' for no before rows)

The real code of the running agent without its threads, each run on a fresh box (config, store,
cache): ``ManifestOrigin.check`` (signature, claims, every item through the schedule file's reader:
what the ``central-manifest`` thread does), the checked manifest put in force by
``CentralSync.on_event`` (one store transaction and the schedule merge: the main loop), then one
round of the ``central-audio`` thread without its downloads (every item's next start within 7
days, which files the verified cache holds, the download plan, eviction).  Then a newer version
that moves a tenth of the items by a minute (only their next starts are found again), and a later
round with nothing new.  The signature and claims alone (``verify_manifest``) are timed apart as
well (they are part of the check).

Two manifests of 10,000 items: daily rules each at its own time of day (none shares anything with
another: the costly case, and the target's), and 300 daily rules with one-off items over the next
30 days.  Every tenth item has its own audio, a third of those files already in the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.central_sync import CentralSync, ManifestChecked
from agent.config import load_config
from agent.schedule_source import Schedule
from agent.store import Store
from bench import scale_bench
from protocol.manifest import sign_manifest, verify_manifest

ITEMS = 10_000
MIXED_RULES = 300  # the second manifest: 300 daily rules, the rest one-off `at` items
RUNS = 5
TARGET_S = 1.0
DEVICE = "bench-box-01"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HEADING = "## A 10,000-item manifest (issue 8)"
BEFORE_REV = (
    "190fb92"  # main before issue 8's scheduler work: dateutil for every rule, PyJWT reading the payload
)
_DAY = 86_400


def _audio(n: int) -> bytes:
    return f"bench audio {n}".encode() * 64


def _claims(rules: int, version: int, now: datetime) -> dict[str, Any]:
    """``rules`` daily rules, each at its own second of the day, then ``at`` items over 30 days;
    every tenth item has its own audio; version ``v`` moves the items ``n % 10 == v % 10`` a minute."""
    raw = []
    for n in range(ITEMS):
        sha256 = hashlib.sha256(_audio(n // 10)).hexdigest()
        moved = 60 if n % 10 == version % 10 else 0
        item: dict[str, Any] = {
            "id": f"c{n:05d}",
            "audio": {"sha256": sha256, "url": f"https://c.example/{sha256}"},
        }
        if n < rules:
            second = ((n * _DAY) // rules + moved) % _DAY
            item["rrule"] = (
                f"FREQ=DAILY;BYHOUR={second // 3600};BYMINUTE={second // 60 % 60};BYSECOND={second % 60}"
            )
            item["dtstart"] = "2025-01-01 00:00"
        else:
            offset = (n - rules) * 30 * _DAY // (ITEMS - rules) + moved
            item["at"] = (
                (now + timedelta(minutes=5, seconds=offset)).astimezone(TZ).isoformat(timespec="seconds")
            )
        raw.append(item)
    return {"v": 1, "aud": DEVICE, "iat": int(now.timestamp()) - 60, "version": str(version), "items": raw}


def _box(directory: Path, key: Ed25519PrivateKey) -> tuple[CentralSync, Store]:
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (directory / "central.pub").write_bytes(pem)
    (directory / "agent.yaml").write_text(
        f"device: {{id: {DEVICE}, timezone: {TZ.key}}}\nstorage: {{dir: state, cache_max: 10GB}}\n"
        "gpio: {pin_factory: mock, amplifiers: [{name: zone-1, pin: 17}]}\n"
        "central: {mqtt_url: 'mqtt://127.0.0.1:1', signing_public_key_files: [central.pub]}\n",
        encoding="utf-8",
    )
    config = load_config(directory / "agent.yaml")
    store = Store.open(config.storage.dir)
    schedule = Schedule(config)
    schedule.load(store)
    assert config.central is not None
    sync = CentralSync(config, config.central, store, schedule, lambda _event: None, keys=[key.public_key()])
    sync.cache.dir.mkdir(parents=True, exist_ok=True)
    for n in range(0, ITEMS // 10, 3):  # a third of the files, with their real content
        data = _audio(n)
        (sync.cache.dir / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return sync, store


class _Stopwatch:
    """Wall and CPU time (this process) in ms of each step: the machine is shared."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    def time(self, name: str, step: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        self.laps[f"{name}_ms"] = 1000 * (time.perf_counter() - wall)
        self.laps[f"{name}_cpu_ms"] = 1000 * (time.process_time() - cpu)
        return result


def _run_once(directory: Path, key: Ed25519PrivateKey, tokens: list[str], now: datetime) -> dict[str, float]:
    sync, store = _box(directory, key)
    clock = _Stopwatch()
    try:
        keys, groups = [key.public_key()], frozenset[str]()
        verify = partial(verify_manifest, keys=keys, device_id=DEVICE, groups=groups, current_version=None)
        clock.time("verify", lambda: verify(tokens[0], now=now))
        checked = clock.time("check", lambda: sync.origin.check(tokens[0], now))
        clock.time("apply", lambda: sync.on_event(ManifestChecked(checked, None)))
        clock.time("round", lambda: _plan_round(sync, now))
        newer = clock.time("check2", lambda: sync.origin.check(tokens[1], now))
        clock.time("apply2", lambda: sync.on_event(ManifestChecked(newer, None)))
        clock.time("round2", lambda: _plan_round(sync, now))
        clock.time("steady", lambda: _plan_round(sync, now))
        assert sync.origin.version == "2", "the newer manifest was not put in force"
        cache = sync.status()["cache"]
    finally:
        store.close()
    laps = clock.laps
    for suffix in ("ms", "cpu_ms"):
        laps[f"total_{suffix}"] = sum(laps[f"{step}_{suffix}"] for step in ("check", "apply", "round"))
        laps[f"newer_{suffix}"] = sum(laps[f"{step}_{suffix}"] for step in ("check2", "apply2", "round2"))
    return {**laps, "ready": cache["ready"], "missing": cache["missing"]}


def _plan_round(sync: CentralSync, now: datetime) -> None:
    """One round of the ``central-audio`` thread without its downloads (the URLs lead nowhere)."""
    downloads = sync.downloads
    needed = downloads._needed(now)
    ready = {sha for sha in {n.sha256 for n in needed} if sync.cache.ready(sha)}
    wanted = [(n.sha256, n.url, max(n.start, now)) for n in needed if n.url is not None]
    sync.cache.plan(wanted, now)
    sync.cache.evict(sync.cache.needed())
    downloads._publish(needed, ready, now)


def measure(rules: int, runs: int = RUNS) -> dict[str, Any]:
    """Medians of ``runs`` fresh boxes for the manifest with ``rules`` daily rules."""
    now = datetime.now(UTC)
    key = Ed25519PrivateKey.generate()
    tokens = [sign_manifest(_claims(rules, version, now), key) for version in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="loa-manifest-bench-") as tmp:
        results = []
        for run in range(runs):
            box = Path(tmp) / f"run{run}"
            box.mkdir()
            results.append(_run_once(box, key, tokens, now))
    median = {name: round(statistics.median(r[name] for r in results)) for name in results[0]}
    return {"rules": rules, "token_kb": round(len(tokens[0]) / 1024), **median,
            "total_max_ms": round(max(r["total_ms"] for r in results))}  # fmt: skip


def _measure_on(rev: str, rules: int) -> dict[str, Any]:
    """:func:`measure` on git revision ``rev``, with this very bench, in a fresh interpreter."""
    with scale_bench.exported(rev) as tree:
        shutil.copy(Path(__file__), tree / "bench" / "manifest_bench.py")
        done = subprocess.run(
            [sys.executable, "-m", "bench.manifest_bench", "--measure", str(rules)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True,
        )  # fmt: skip
    return dict(json.loads(done.stdout.splitlines()[-1]))


def run(compare: str | None = BEFORE_REV) -> dict[str, Any]:
    """Both manifests on this tree, and on ``compare`` (when given and present) first, in the same
    run; the load average (1 min) before and after each."""
    result: dict[str, Any] = {"measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "runs": RUNS}
    if compare is not None and scale_bench.have(compare):
        result["before_rev"] = compare
    for name, rules in (("rules", ITEMS), ("mixed", MIXED_RULES)):
        if compare is not None and "before_rev" in result:
            result[f"{name}_before"] = _loaded(partial(_measure_on, compare, rules))
            print(f"{name}_before", result[f"{name}_before"], flush=True)
        result[name] = _loaded(partial(measure, rules))
        print(name, result[name], flush=True)
    return result


def _loaded(measured: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    result = measured()
    result["load"] = (round(load, 2), round(os.getloadavg()[0], 2))
    return result


def _row(label: str, m: dict[str, Any], target: bool = True) -> str:
    verdict = ("met" if m["total_ms"] <= TARGET_S * 1000 else "**NOT met**") if target else ""
    return (
        f"| {label} | {m['verify_ms']} ms | {m['check_ms']} ms | {m['apply_ms']} ms "
        f"| {m['round_ms']} ms | **{m['total_ms']} ms** ({m['total_cpu_ms']} ms CPU; "
        f"worst {m['total_max_ms']} ms) "
        f"| {verdict} | {m['newer_ms']} ms | {m['steady_ms']} ms | {m['load'][0]} → {m['load'][1]} |"
    )


def _rows(result: dict[str, Any]) -> str:
    rows = []
    for name, label in (
        ("rules", "10,000 daily rules, each at its own time"),
        ("mixed", "300 daily rules, 9,700 one-off items"),
    ):
        kb = result[name]["token_kb"]
        if f"{name}_before" in result:
            rows.append(
                _row(f"{label} ({kb} KB), before (`{result['before_rev']}`)", result[f"{name}_before"], False)
            )
        rows.append(_row(f"{label} ({kb} KB)", result[name]))
    return "\n".join(rows)


def render(result: dict[str, Any]) -> str:
    rules = result["rules"]
    return f"""{HEADING}

Measured {result["measured"]} on {scale_bench.machine()}; the machine has {os.cpu_count()}
cores shared with other work, and a higher load inflates every figure (load average, 1 min,
before → after each row).  Reproduce with `.venv/bin/python -m bench.run_all --only manifest`
(about {_minutes(result)} minutes; it rewrites this section only, and measures commit \
`{BEFORE_REV}` with the same bench first).

`bench/manifest_bench.py` runs the agent's own code without its threads, each run on a fresh box:
a signed manifest (EdDSA) of 10,000 items is checked as the `central-manifest` thread does
(`ManifestOrigin.check`: signature, claims, every item through the schedule file's reader), put
in force as the main loop does (`CentralSync.on_event`: one store transaction, the schedule
merge), and reconciled against the cache in one round of the `central-audio` thread without its
downloads (each item's next start within 7 days, which files the verified cache holds, the
download plan, eviction).  Every tenth item has its own audio, a third of those files cached.
"Newer version" is the same for a manifest that moves a tenth of the items by a minute (only their
next starts are found again); "later round" is a round with nothing new.  "Verified and
reconciled" (the target) is check + put in force + first round.  Medians of {result["runs"]}
boxes; "signature and claims" (`protocol.manifest.verify_manifest` alone) is part of "check".

| manifest | signature and claims | check | put in force | first round | verified and reconciled \
| ≤ {TARGET_S:g} s | newer version | later round | load |
|---|---|---|---|---|---|---|---|---|---|
{_rows(result)}

Daily and weekly rules at fixed times of day (`FREQ=DAILY` or `WEEKLY` with INTERVAL, BYDAY,
BYHOUR, BYMINUTE, BYSECOND: what a commune writes) are checked and expanded by arithmetic
(`scheduler/plain_rule.py`), each read once for its check and once for its next start: nothing is
kept between them, so the idle daemon holds no parsed rules.  Every other rule goes through
dateutil as before.  An item read by the schedule's reader no longer checks its rule a second
time, and a signed payload is read with one regular expression where PyJWT 2.10 and later check
each character in Python (`protocol.commands.verified_payload`).  The box now has Debian's PyJWT
2.6, which checks no character at all: the before rows' signature is that fast here because it
reads loosely what the protocol reads strictly (docs/PROTOCOL.md, "What the box refuses").  With
10,000 distinct rules, {rules["total_ms"]} ms of the target's {TARGET_S * 1000:g} ms.
"""


def _minutes(result: dict[str, Any]) -> int:
    return 2 if "before_rev" in result else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.manifest_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--measure", type=int, metavar="RULES", help="print measure(RULES) as JSON only")
    parser.add_argument(
        "--compare", default=BEFORE_REV, help="git revision for the before rows ('' for none)"
    )
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return 0
    from bench.run_all import OUT, with_section

    result = run(args.compare or None)
    OUT.write_text(with_section(OUT.read_text(encoding="utf-8"), HEADING, render(result)), encoding="utf-8")
    print(f"rewrote {HEADING!r} in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
