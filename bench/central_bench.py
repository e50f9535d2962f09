"""The central server with 1,000 boxes: ingest rate and lag, CPU and memory, emergency fan-out (issue 9).

    python -m bench.central_bench [--boxes 1000] [--write]
    python -m bench.run_all --only central          (the same, written into docs/BENCHMARKS.md)

The real server: ``loa-central init`` and ``loa-central serve`` as processes (uvicorn, SQLite, the
embedded Mosquitto with its password file and ACL).  The boxes are registered with their own
broker accounts, most through the registry's API (``registry.add_device`` with a Mosquitto hash,
what ``loa-central device add`` calls) and the last few by the real ``loa-central device add``
while the server runs (it rewrites the ACL and makes the broker reload it).  They are simulated by
:mod:`bench.central_fleet`: lightweight MQTT clients in two worker processes, which send what
docs/PROTOCOL.md says a box sends and verify each command's signature as a box does.

Phases, one run (about 2.5 minutes):

1. connect: every box connects, subscribes, says ``online``, its ``state`` and an event;
2. steady (``STEADY_S``): telemetry every 10 s from every box, one play-log occurrence (playing,
   then completed) per box; ``EMERGENCY_AT`` s into it an emergency to the province (one signed
   group command, fanned out by the broker), and ``SECOND_AT`` s into it the same emergency to the
   1,000 boxes by id (1,000 tokens, one per box);
3. burst: every box sends ``BURST`` spooled events at once (its outbox after an outage), which
   gives the rate at which the server stores records when it is the bottleneck.

Ingest lag is a record's ``received_at`` (when ingest took it, just before its transaction) minus
its ``at`` (when the box wrote it), both on this machine's clock.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pprint
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from bench import central_fleet, central_report
from bench.central_fleet import AUDIO, BoxAccount, CommandSeen, Counts
from bench.proc_usage import usage
from central import db, registry
from central.config import load_central_config
from central.passwords import mosquitto_hash

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "BENCHMARKS.md"
PROVINCE = "tinh-bench"
PER_COMMUNE = 10
WORKERS = 2
CLI_BOXES = 2  # registered by the real `loa-central device add` while the server runs
TELEMETRY_EVERY = 10.0
PLAY_S = 20.0
STEADY_S = 60.0
EMERGENCY_AT, SECOND_AT = 20.0, 40.0
BURST = 10
QUIET_AFTER = 6.0  # seconds after an emergency's POST left out of the "quiet" lag
ADMIN_PASSWORD = secrets.token_urlsafe(16)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"n": len(values), "p50": round(_percentile(values, 50)), "p99": round(_percentile(values, 99)),
            "max": round(max(values))}  # fmt: skip


def _cli(config: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "central.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"loa-central {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def _commune(n: int) -> str:
    return f"xa-bench-{n:03d}"


def setup(directory: Path, boxes: int) -> tuple[Path, list[BoxAccount], int, int]:
    """A config, ``loa-central init``, and ``boxes - CLI_BOXES`` boxes registered through the registry."""
    http_port, mqtt_port = _free_port(), _free_port()
    config = directory / "central.yaml"
    config.write_text(
        f"storage: {{dir: {directory / 'data'}}}\nhttp: {{listen: 127.0.0.1:{http_port}}}\n"
        f"public_url: http://127.0.0.1:{http_port}\n"
        f"mqtt: {{broker: embedded, listen: 127.0.0.1:{mqtt_port}}}\n"
        "logging: {level: warning}\n",
        encoding="utf-8",
    )
    (directory / "admin-password").write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    _cli(config, "init", "--admin", "admin", "--password-file", str(directory / "admin-password"))
    engine = db.open_engine(load_central_config(config).database_url)
    accounts = []
    try:
        for n in range(boxes - CLI_BOXES):
            commune = _commune(n // PER_COMMUNE)
            chain = registry.ensure_unit_chain(engine, [(PROVINCE, "province", "Tỉnh Bench"),
                                                        (commune, "commune", f"Xã {commune}")])  # fmt: skip
            groups = (commune, PROVINCE)
            account = BoxAccount(f"{commune}-{n % PER_COMMUNE:02d}", secrets.token_urlsafe(24), groups)
            registry.add_device(
                engine, account.device_id, chain[-1].id, groups, mosquitto_hash(account.password)
            )
            accounts.append(account)
    finally:
        engine.dispose()
    return config, accounts, http_port, mqtt_port


def add_with_cli(config: Path, directory: Path, first: int, count: int) -> list[BoxAccount]:
    """Boxes registered by ``loa-central device add`` while the server runs (ACL rewrite + SIGHUP)."""
    accounts = []
    for n in range(first, first + count):
        commune = _commune(n // PER_COMMUNE)
        device = f"{commune}-{n % PER_COMMUNE:02d}"
        out = directory / "boxes" / device
        _cli(config, "device", "add", device, "--province", PROVINCE, "--commune", commune, "--out", str(out))
        password = (out / "mqtt-password").read_text(encoding="utf-8").strip()
        accounts.append(BoxAccount(device, password, (commune, PROVINCE)))
    return accounts


@dataclass
class Sample:
    at: float
    central_cpu_s: float
    central_rss_mb: float
    broker_cpu_s: float
    broker_rss_mb: float


class Sampler:
    """CPU and RSS of the server and its broker, every second, on a thread of its own."""

    def __init__(self, central_pid: int, broker_pid: int) -> None:
        self.pids = (central_pid, broker_pid)
        self.samples: list[Sample] = []
        self.gaps = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                central, broker = usage(self.pids[0]), usage(self.pids[1])
                self.samples.append(
                    Sample(time.time(), central.cpu_s, central.rss_mb, broker.cpu_s, broker.rss_mb)
                )
            except OSError:  # a process gone (stopping, or a broker restarted): reported as a gap
                self.gaps += 1
            if self.stop.wait(1.0):
                return

    def phase(self, start: float, end: float) -> dict[str, float]:
        """Mean CPU (% of one core) and peak RSS of each process between ``start`` and ``end``."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        wall = last.at - first.at
        return {"central_cpu_pct": round(100 * (last.central_cpu_s - first.central_cpu_s) / wall),
                "central_rss_mb": round(max(s.central_rss_mb for s in inside)),
                "broker_cpu_pct": round(100 * (last.broker_cpu_s - first.broker_cpu_s) / wall),
                "broker_rss_mb": round(max(s.broker_rss_mb for s in inside))}  # fmt: skip


@contextmanager
def serving(config: Path, http_port: int, mqtt_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``loa-central serve`` as a process, until it answers on both ports; stopped by SIGTERM."""
    log = (config.parent / "serve.log").open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(config), "serve"],
                               stdout=log, stderr=log, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        for port in (mqtt_port, http_port):
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"loa-central serve did not start: {(config.parent / 'serve.log').read_text()}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


class Api:
    def __init__(self, http_port: int) -> None:
        self.base = f"http://127.0.0.1:{http_port}/api/v1"
        self.session = requests.Session()
        login = {"username": "admin", "password": ADMIN_PASSWORD}
        answer = self.session.post(f"{self.base}/auth/token", data=login, timeout=30)
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, self.base + path, timeout=60, **kwargs)
        answer.raise_for_status()
        return answer.json()


def emergency(api: Api, engine: Any, targets: dict[str, list[str]], count: int) -> dict[str, Any]:
    """POST an emergency, then read the database every 0.1 s until every target's ack is stored (a
    read in this process: polling the API as often would load the server it measures); at the end,
    the API's ``GET /commands/{id}`` must show the same acks."""
    load, sent = os.getloadavg()[0], time.time()
    body = {"type": "emergency", "targets": targets, "audio": {"sha256": AUDIO}, "volume": 100}
    ident = api.call("POST", "/commands", json=body)["id"]
    answered = time.time()
    stored: dict[str, float] = {}
    acked = select(db.command_targets.c.device_id).where(
        db.command_targets.c.command_id == ident, db.command_targets.c.result.is_not(None)
    )
    deadline = sent + 30
    while len(stored) < count and time.time() < deadline:
        with engine.connect() as conn:
            devices = conn.execute(acked).scalars().all()
        seen = time.time()
        for device in devices:
            stored.setdefault(device, seen)
        time.sleep(0.1)
    shown = api.call("GET", f"/commands/{ident}")["acks"].values()
    return {"id": ident, "sent": sent, "post_ms": round(1000 * (answered - sent)), "stored": stored,
            "load": load, "api_acks": sum(ack["result"] is not None for ack in shown)}  # fmt: skip


def _fanout(result: dict[str, Any], seen: list[CommandSeen], count: int) -> dict[str, Any]:
    mine = [c for c in seen if c.command_id == result["id"]]
    acked = [1000 * (c.acked - result["sent"]) for c in mine if c.result == "accepted"]
    received = [1000 * (c.received - result["sent"]) for c in mine]
    stored = [1000 * (at - result["sent"]) for at in result["stored"].values()]
    return {"targets": count, "post_ms": result["post_ms"], "acked": _spread(acked),
            "received": _spread(received), "load": round(result["load"], 1),
            "api_acks": result["api_acks"], "refused": len([c for c in mine if c.result != "accepted"]),
            "stored": _spread(stored), "all_stored": len(stored) == count}  # fmt: skip


def _wait(condition: Any, timeout: float, step: float = 0.5) -> float:
    """Seconds until ``condition()`` held (RuntimeError after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"condition not met within {timeout:.0f} s")
        time.sleep(step)
    return time.monotonic() - start


def _count(engine: Any, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def run(boxes: int = 1000, keep: Path | None = None) -> dict[str, Any]:
    """The whole run; ``keep``: a new directory to run in and leave behind (logs, database)."""
    fd_limit = central_fleet.raise_fd_limit(boxes * 3 + 256)  # the broker (a child) inherits it
    load_before, measured = os.getloadavg(), f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    with tempfile.TemporaryDirectory(prefix="central-bench-") as tmp:
        directory = Path(tmp) if keep is None else keep
        directory.mkdir(parents=True, exist_ok=keep is None)
        config, accounts, http_port, mqtt_port = setup(directory, boxes)
        database_url = load_central_config(config).database_url
        with serving(config, http_port, mqtt_port) as server:
            accounts += add_with_cli(config, directory, len(accounts), CLI_BOXES)
            broker_pid = int((directory / "data" / "mosquitto" / "mosquitto.pid").read_text())
            sampler = Sampler(server.pid, broker_pid)
            sampler.thread.start()
            result = _drive(directory, accounts, http_port, mqtt_port, database_url, sampler)
            sampler.stop.set()
        result |= _stored(database_url, result)
        logs = [directory / "serve.log", directory / "data" / "mosquitto" / "mosquitto.log"]
        lines = [
            line for log in logs for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
        ]
    problems = ("dropped", "Traceback", "ERROR", "failed")
    result["log_problems"] = [line for line in lines if any(word in line for word in problems)]
    result |= {"boxes": boxes, "fd_limit": fd_limit, "load_before": load_before, "measured": measured,
               "load_after": os.getloadavg(), "cores": os.cpu_count()}  # fmt: skip
    return result


def _drive(directory: Path, accounts: list[BoxAccount], http_port: int, mqtt_port: int, database_url: str,
           sampler: Sampler) -> dict[str, Any]:  # fmt: skip
    engine = db.open_engine(database_url)
    context = multiprocessing.get_context("spawn")
    key = (directory / "data" / "signing-key.pub.pem").read_bytes()
    pipes, workers = [], []
    for n in range(WORKERS):
        ours, theirs = context.Pipe()
        share = accounts[n::WORKERS]
        process = context.Process(target=central_fleet.worker, name=f"fleet-{n}",
                                  args=(share, "127.0.0.1", mqtt_port, key, theirs))  # fmt: skip
        process.start()
        pipes.append(ours)
        workers.append(process)
    try:
        start = time.time()
        ready = [pipe.recv() for pipe in pipes]  # ("ready", seconds, refused)
        connected = time.time()
        online = select(func.count()).select_from(db.devices).where(db.devices.c.online.is_(True))
        with contextlib.suppress(RuntimeError):  # reported below: boxes whose "online" was lost
            _wait(lambda: _count(engine, online) == len(accounts), 60)
        settled = time.time()
        online_boxes = _count(engine, online)
        api = Api(http_port)
        steady_start = time.time()
        for pipe in pipes:
            pipe.send(("steady", STEADY_S, TELEMETRY_EVERY, PLAY_S))
        time.sleep(max(0.0, steady_start + EMERGENCY_AT - time.time()))
        group = emergency(api, engine, {"units": [PROVINCE]}, len(accounts))
        time.sleep(max(0.0, steady_start + SECOND_AT - time.time()))
        by_id = emergency(api, engine, {"devices": [a.device_id for a in accounts]}, len(accounts))
        time.sleep(max(0.0, steady_start + STEADY_S + 2 - time.time()))
        steady_end = time.time()
        spooled = (
            select(func.count())
            .select_from(db.records)
            .where(db.records.c.data["kind"].as_string() == "spooled")
        )
        for pipe in pipes:
            pipe.send(("burst", BURST))
        burst_sent = max(pipe.recv()[1] for pipe in pipes)
        try:
            burst_s = _wait(lambda: _count(engine, spooled) >= BURST * len(accounts), 60, 0.2)
        except RuntimeError:
            burst_s = float("nan")
        burst_end = time.time()
        reports = []
        for pipe in pipes:
            pipe.send(("report",))
            reports.append(pipe.recv())
        for pipe in pipes:
            pipe.send(("stop",))
            pipe.recv()
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        engine.dispose()
    counts = Counts()
    for report in reports:
        for name in vars(counts):
            setattr(counts, name, getattr(counts, name) + getattr(report[1], name))
    seen = [c for report in reports for c in report[2]]
    return {
        "connect_s": round(connected - start, 1), "online_s": round(settled - start, 1),
        "online": online_boxes,
        "refused_connects": sum(r[2] for r in ready), "sent": vars(counts),
        "windows": {"steady": (steady_start, steady_end), "burst": (burst_sent, burst_end),
                    "emergencies": (group["sent"], by_id["sent"])},
        "burst_s": round(burst_s, 1),
        "group": _fanout(group, seen, len(accounts)), "by_id": _fanout(by_id, seen, len(accounts)),
        "cpu": {"connect": sampler.phase(start, settled), "steady": sampler.phase(steady_start, steady_end),
                "burst": sampler.phase(burst_sent - 1, burst_end + 1)},
    }  # fmt: skip


def _stored(database_url: str, result: dict[str, Any]) -> dict[str, Any]:
    """Counts and lags from the database the server wrote."""
    engine = db.open_engine(database_url)
    (s0, s1), (b0, b1) = result["windows"]["steady"], result["windows"]["burst"]
    records = db.records.c
    with engine.connect() as conn:
        rows = conn.execute(select(records.stream, records.at, records.received_at, records.data)).all()
        playlogs = int(conn.execute(select(func.count()).select_from(db.playlogs)).scalar_one())
        completed = int(conn.execute(select(func.count()).select_from(db.playlogs)
                                     .where(db.playlogs.c.outcome == "completed")).scalar_one())  # fmt: skip
    engine.dispose()
    lag: dict[str, list[float]] = {"telemetry": [], "playlog": [], "burst": [], "quiet": []}
    emergencies = result["windows"]["emergencies"]
    stored = {"telemetry": 0, "playlog": 0, "events": 0}
    received = []
    for row in rows:
        stored[row.stream] += 1
        at, got = row.at.timestamp(), row.received_at.timestamp()
        if row.stream == "events" and row.data.get("kind") == "spooled":
            lag["burst"].append(1000 * (got - at))
            received.append(got)
        elif row.stream in ("telemetry", "playlog") and s0 <= at <= s1:
            lag[row.stream].append(1000 * (got - at))
            if not any(sent <= at <= sent + QUIET_AFTER for sent in emergencies):
                lag["quiet"].append(1000 * (got - at))
    steady = lag["telemetry"] + lag["playlog"]
    rate = len(received) / (max(received) - min(received)) if len(received) > 1 else 0.0
    return {"stored": stored, "playlog_rows": playlogs, "playlog_completed": completed,
            "steady_records": len(steady), "steady_rate": round(len(steady) / (s1 - s0), 1),
            "lag": {"steady": _spread(steady), "telemetry": _spread(lag["telemetry"]),
                    "playlog": _spread(lag["playlog"]), "burst": _spread(lag["burst"]),
                    "quiet": _spread(lag["quiet"])},
            "burst_rate": round(rate), "burst_records": len(received),
            "burst_window_s": round(b1 - b0, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="run in this new directory and keep it (logs, database)")
    parser.add_argument("--write", action="store_true", help="put the section into docs/BENCHMARKS.md")
    args = parser.parse_args()
    result = run(args.boxes, args.keep)
    pprint.pprint(result, width=110)
    if args.write:
        write(result)
    return 0


def write(result: dict[str, Any]) -> None:
    """Replace (or add) this bench's section of docs/BENCHMARKS.md."""
    document = OUT.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(central_report.TITLE)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    section = central_report.render(result)
    if pattern.search(document):
        document = pattern.sub(lambda _: section + "\n", document, count=1).rstrip("\n") + "\n"
    else:
        document = document.rstrip("\n") + "\n\n" + section
    OUT.write_text(document, encoding="utf-8")
    print(f"wrote {central_report.TITLE!r} into {OUT}")


if __name__ == "__main__":
    sys.exit(main())
