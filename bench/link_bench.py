"""The central link (issue 8): command latency, spooled delivery, idle cost.

    .venv/bin/python -m bench.link_bench [--commands 120] [--records 10000] [--idle 60]

Every figure comes from a real Mosquitto on a free loopback port (started as tests/mqtt_broker.py
does, persistence off) and the real agent (``agent.daemon.run``), with gpiozero's MockFactory pins.

* command: a signed ``play_now`` (``protocol.commands.sign_command``, signed before the clock
  starts, as the central server would) of a cached 0.3 s beep, published at QoS 1 to the box's
  ``cmd`` topic by a subscriber standing in for the central server.  The daemon runs in this
  process (libVLC writing a WAV through ``--aout=afile``, relay pre-roll 500 ms).  Measured from
  just before ``publish()``: the last relay closed (``AmplifierRelays.history``, monotonic), the
  player's "playing" (the play log's ``actual_start``, the libVLC event's wall time, kept to the
  millisecond) and the ``done`` ack's arrival at the subscriber.  Each command waits until the
  previous one has ended and its relays have opened again, so every one closes relays from cold.
* spool: the daemon (its own process, null player) is started with the broker down, after its
  store's play log was filled with ``--records`` completed rows (``Store.record_play``, as the
  agent writes them); then the broker and a subscriber start, and the subscriber counts the
  records until it has every seq once.
* idle: ``loa-agent run`` (libVLC, nothing due) with and without a ``central:`` section, the link
  up, sampled from /proc as bench/agent_bench.py's footprint does; then once more with an
  ``api_url`` (a loopback server with no manifest for the box), so the manifest poll has loaded
  requests.

A 10,000-item manifest is measured by bench/manifest_bench.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config
from agent.control import request
from agent.daemon import run as run_daemon
from agent.runtime import Agent
from agent.store import PlayRecord, Store, iso
from bench import scale_bench
from bench.proc_usage import usage, watch
from drivers.wav_samples import tone, write_wav
from foundation.errors import NotRunningError
from protocol.commands import sign_command
from protocol.messages import decode_ack, decode_status
from tests.http_stand_in import serving
from tests.mqtt_broker import MOSQUITTO, Broker

ROOT = Path(__file__).resolve().parent.parent
BASE_REV = "7ca0b3b"  # the commit these benchmarks were first run on, before this fixes
DEVICE = "bench-link-01"
TOPIC = f"loa/v1/{DEVICE}"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PREROLL_MS = 500
COMMAND_TARGET_MS = 100  # over the pre-roll
SPOOL_TARGET_S = 5.0
IDLE_RSS_TARGET_MB = 60.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _spread(values: list[float]) -> dict[str, float]:
    spread = {f"p{q}": _percentile(values, q) for q in (50, 90, 99)}
    spread["max"] = max(values)
    return {name: round(value, 1) for name, value in spread.items()}


def _key(directory: Path) -> Ed25519PrivateKey:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (directory / "central.pub").write_bytes(pem)
    return private


def _config(
    directory: Path,
    *,
    backend: str,
    central_url: str | None,
    out: Path | None = None,
    api_url: str | None = None,
) -> Path:
    vlc = f', vlc_args: ["--aout=afile", "--audiofile-file={out}", "--audiofile-wav"]' if out else ""
    api = f", api_url: '{api_url}'" if api_url else ""
    central = (
        f"central: {{mqtt_url: '{central_url}'{api}, signing_public_key_files: [central.pub]}}\n"
        if central_url
        else ""
    )
    path = directory / "agent.yaml"
    path.write_text(
        f"""device: {{id: {DEVICE}, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: {backend}{vlc}}}
gpio: {{pin_factory: mock, amplifiers: [{{name: zone-1, pin: 17}}, {{name: zone-2, pin: 18}}],
       preroll: {PREROLL_MS}ms, postroll: 100ms}}
schedule: {{file: schedule.yaml}}
clock: {{require_sync: false}}
control: {{socket: agent.sock}}
logging: {{level: warning}}
{central}""",
        encoding="utf-8",
    )
    (directory / "schedule.yaml").write_text("items: []\n", encoding="utf-8")
    return path


class Central:
    """A subscriber standing in for the central server: publishes commands, timestamps what comes."""

    def __init__(self, port: int, on_message: Callable[[str, bytes, float, bool], None]) -> None:
        self.subscribed = threading.Event()
        self._on_message = on_message
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-central", clean_session=True,
                                  protocol=mqtt.MQTTv311)  # fmt: skip
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the bench's subscriber was not subscribed within 10 s")

    def _message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()  # paho's thread: stamp and hand over
        self._on_message(message.topic, bytes(message.payload), now, bool(message.retain))

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{why}: not within {timeout} s")
        time.sleep(0.002)


@contextmanager
def _broker(directory: Path, *, started: bool = True) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        raise RuntimeError("mosquitto is not installed (the Makefile's APT_PACKAGES installs it)")
    broker = Broker(directory)
    if started:
        broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@contextmanager
def _agent_in_thread(config_path: Path) -> Iterator[Agent]:
    config = load_config(config_path)
    stop = threading.Event()
    agents: list[Agent] = []
    thread = threading.Thread(target=run_daemon, args=(config, stop, agents.append), daemon=True)
    thread.start()
    _wait(lambda: bool(agents), 20, "the agent did not start")
    try:
        yield agents[0]
    finally:
        stop.set()
        agents[0].post(None)
        thread.join(timeout=15)


# -- 1. command to relays closed and audio playing ---------------------------------------------------


def _ack_done_listener(done: dict[str, float]) -> Callable[[str, bytes, float, bool], None]:
    def listen(topic: str, payload: bytes, at: float, _retained: bool) -> None:
        if topic == f"{TOPIC}/ack":
            ack = decode_ack(payload)
            if ack.result.value == "done":
                done.setdefault(ack.id, at)

    return listen


def command_latency(commands: int) -> dict[str, Any]:
    """``commands`` signed play_now commands, one at a time, each closing relays from cold."""
    with tempfile.TemporaryDirectory(prefix="loa-link-bench-") as tmp, _broker(Path(tmp)) as broker:
        directory = Path(tmp)
        key = _key(directory)
        config_path = _config(directory, backend="vlc", central_url=broker.url, out=directory / "out.wav")
        done: dict[str, float] = {}
        central = Central(broker.port, _ack_done_listener(done))
        relays_ms: list[float] = []
        playing_ms: list[float] = []
        done_ms: list[float] = []
        load_before = os.getloadavg()[0]
        try:
            with _agent_in_thread(config_path) as agent:
                link = agent.link
                assert link is not None
                _wait(lambda: link.up, 20, "the link did not come up")
                beep = directory / "beep.wav"
                write_wav(beep, tone(1000.0, 0.3, 48000), 48000)
                sha256 = hashlib.sha256(beep.read_bytes()).hexdigest()
                cache = agent.config.storage.dir / "audio"
                cache.mkdir(parents=True, exist_ok=True)
                (cache / sha256).write_bytes(beep.read_bytes())
                for n in range(commands + 2):  # the first two warm the path up and are not counted
                    times = _one_command(agent, central, key, sha256, f"bench-{n:04d}", done)
                    if n >= 2:
                        relays_ms.append(times[0])
                        playing_ms.append(times[1])
                        done_ms.append(times[2])
        finally:
            central.close()
    over = [played - PREROLL_MS for played in playing_ms]
    return {
        "commands": commands,
        "preroll_ms": PREROLL_MS,
        "load_average": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "relays_closed_ms": _spread(relays_ms),
        "playing_ms": _spread(playing_ms),
        "playing_over_preroll_ms": _spread(over),
        "done_ack_ms": _spread(done_ms),
    }


def _one_command(
    agent: Agent, central: Central, key: Ed25519PrivateKey, sha256: str, jti: str, done: dict[str, float]
) -> tuple[float, float, float]:
    now = int(time.time())
    claims = {"jti": jti, "aud": DEVICE, "iat": now, "exp": now + 600, "cmd": "play_now",
              "audio": {"sha256": sha256}}  # fmt: skip
    token = sign_command(claims, key)
    history = agent.relays.history
    seen = len(history)
    sent_wall, sent = time.time(), time.monotonic()
    central.publish(f"{TOPIC}/cmd", token)
    _wait(lambda: jti in done, 20, f"no done ack for {jti}")
    closed = [at for at, _, is_closed in history[seen:] if is_closed]
    item_id = f"central-command-{jti}"
    # the relays open after the end and the post-roll: the next command starts from cold
    _wait(lambda: any(not is_closed for _, _, is_closed in history[seen:]), 20, f"{jti} never ended")
    _wait(lambda: not any(agent.relays.states().values()), 20, "relays stayed closed")
    row = _play_row(agent, item_id)
    started = datetime.fromisoformat(row.actual_start or "").timestamp()
    if len(closed) != len(agent.relays.zones):
        raise RuntimeError(f"{jti}: relays closed {closed} before playing; expected every zone from cold")
    return (
        1000 * (max(closed) - sent),
        1000 * (started - sent_wall),
        1000 * (done[jti] - sent),
    )


def _play_row(agent: Agent, item_id: str) -> PlayRecord:
    store = Store.open_readonly(agent.config.storage.dir)
    try:
        rows = [row for row in store.play_log(limit=5) if row.item_id == item_id and row.actual_start]
    finally:
        store.close()
    if not rows:
        raise RuntimeError(f"no play-log row with an actual start for {item_id}")
    return rows[-1]


# -- 2. spooled play-log records delivered after reconnect -------------------------------------------


def fill_play_log(storage: Path, records: int) -> float:
    """``records`` completed rows written one by one as the agent writes them; seconds taken."""
    store = Store.open(storage)
    began = time.monotonic()
    start = datetime.now(UTC) - timedelta(hours=6)
    try:
        for n in range(records):
            at = start + timedelta(seconds=2 * n)
            store.record_play(
                PlayRecord(
                    key=f"spooled-{n:05d}@{iso(at)}",
                    item_id=f"spooled-{n:05d}",
                    audio="beep.wav",
                    level="normal",
                    zones=("zone-1", "zone-2"),
                    scheduled_start=iso(at) or "",
                    actual_start=iso(at),
                    ended=iso(at + timedelta(seconds=1)),
                    outcome="completed",
                    reason="",
                    origin="local",
                )
            )
    finally:
        store.close()
    return time.monotonic() - began


@contextmanager
def _daemon_process(directory: Path, tree: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``loa-agent run`` of source tree ``tree`` in ``directory``, once its control socket answers."""
    command = [sys.executable, "-m", "agent.daemon", "--config", "agent.yaml", "run"]
    proc = subprocess.Popen(command, cwd=directory, env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request(directory / "agent.sock", "status", timeout=5.0)
                break
            except NotRunningError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not start (exit {proc.returncode})") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


class _Raced(Exception):
    """The agent was online before the subscriber had subscribed: its first records were lost to it."""


def spool_delivery(records: int, tree: Path = ROOT, attempts: int = 3) -> dict[str, Any]:
    """The daemon (of ``tree``) offline with ``records`` undelivered play-log rows; then the broker
    comes back.  Measured again (at most ``attempts`` times) when the agent's reconnect came before
    the subscriber's subscription, a few milliseconds after the broker started."""
    for _ in range(attempts):
        try:
            return _spool_once(records, tree)
        except _Raced:
            print("the agent reconnected before the subscriber had subscribed: measuring again", flush=True)
    raise RuntimeError(f"the agent reconnected before the subscriber {attempts} times")


def _spool_once(records: int, tree: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loa-link-bench-") as tmp:
        directory = Path(tmp)
        _key(directory)
        with _broker(directory, started=False) as broker:
            _config(directory, backend="null", central_url=broker.url)
            fill_s = fill_play_log(directory / "state", records)
            counts: dict[int, int] = {}
            moments: dict[str, float] = {}
            complete = threading.Event()

            def listen(topic: str, payload: bytes, at: float, retained: bool) -> None:  # paho's thread
                if topic == f"{TOPIC}/status" and decode_status(payload).online:
                    moments.setdefault("raced" if retained else "online", at)
                    if retained:
                        complete.set()
                elif topic == f"{TOPIC}/playlog":
                    seq = int(json.loads(payload)["id"].rsplit(":", 1)[1])
                    counts[seq] = counts.get(seq, 0) + 1
                    if len(counts) >= records:
                        moments.setdefault("all", at)
                        complete.set()

            with _daemon_process(directory, tree) as proc:
                # offline for a while: the link has tried at 0, 1 and 3 s and backs off to its next
                # attempt at 7 s, well after the subscriber (a few ms after the broker) is there
                time.sleep(5.0)
                cpu_before = usage(proc.pid).cpu_s
                broker.start()
                broker_up = time.monotonic()
                central = Central(broker.port, listen)
                try:
                    done = complete.wait(120)
                    cpu_s = usage(proc.pid).cpu_s - cpu_before
                    if not done:
                        missing = sorted(set(range(1, records + 1)) - set(counts))
                        raise RuntimeError(
                            f"only {len(counts)} of {records} records within 120 s (missing: {missing[:20]})"
                        )
                    if "raced" in moments:
                        raise _Raced()
                    time.sleep(2.0)  # repeats would come now
                finally:
                    central.close()
    repeated = sum(count - 1 for count in counts.values())
    return {
        "records": records,
        "fill_s": round(fill_s, 1),
        "received": len(counts),
        "repeated": repeated,
        "wrong_seqs": sorted(set(counts) - set(range(1, records + 1)))[:5],
        "reconnect_s": round(moments["online"] - broker_up, 2),
        "delivery_s": round(moments["all"] - moments["online"], 2),
        "records_per_s": round(records / (moments["all"] - moments["online"])),
        "daemon_cpu_s": round(cpu_s, 2),
    }


# -- 3. the idle daemon with the link up ---------------------------------------------------------------


def _idle(directory: Path, seconds: float, tree: Path, *, played: bool = False) -> dict[str, float]:
    with _daemon_process(directory, tree) as proc:
        time.sleep(3)  # start-up (imports, libVLC plugin scan, connecting) is not idle time
        if played:
            _play_each_kind(directory)
        watched = watch(proc.pid, seconds)
        connected = request(directory / "agent.sock", "status").get("link", {}).get("connected")
    return {
        "seconds": round(watched.wall_s, 1),
        "rss_peak_mb": round(max(watched.rss_mb), 1),
        "rss_mean_mb": round(statistics.fmean(watched.rss_mb), 1),
        "cpu_percent_of_one_core": round(watched.cpu_percent_of_one_core, 3),
        "connected": connected,
    }


PLAYED_KINDS = ("wav", "ogg", "mp3")  # what a box plays in a day: its test tone, bulletins


def _play_each_kind(directory: Path) -> None:
    """Play a short WAV, Ogg Vorbis (sox) and MP3 (lame) tone through the running daemon (``loa
    play``), each to its end: libVLC keeps the demuxers and decoders it loaded for them."""
    wav = directory / "tone.wav"
    write_wav(wav, tone(660.0, 1.0, 44100), 44100)
    encoders = {"ogg": ["sox", str(wav), "-C", "4"], "mp3": ["lame", "--quiet", "-b", "128", str(wav)]}
    for kind in PLAYED_KINDS:
        path = wav.with_suffix(f".{kind}")
        if kind in encoders:
            subprocess.run([*encoders[kind], str(path)], check=True, capture_output=True, timeout=60)
        socket = directory / "agent.sock"
        reply = request(socket, "play", timeout=10.0, file=str(path), level="normal", zones=[])
        if reply.get("result") != "done":
            raise RuntimeError(f"the daemon did not play {path.name}: {reply}")
        time.sleep(2.5)  # 1 s of audio, the relays' preroll, and the end


class _NoManifestYet(BaseHTTPRequestHandler):
    """The central API for a box it has no manifest for yet: every GET is a 404."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def idle_footprint(seconds: float, tree: Path = ROOT) -> dict[str, Any]:
    """The idle daemon (of ``tree``; libVLC, nothing due) without a central link, then with the link
    up, then (this tree only: the before revision had no manifest poll) with the link up and an
    ``api_url`` whose manifest poll has loaded requests (the server has no manifest for it yet), and
    the same once it has played a WAV, an Ogg Vorbis and an MP3 file."""
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="loa-link-bench-") as tmp,
        _broker(Path(tmp)) as broker,
        serving(_NoManifestYet) as api,
    ):
        runs = [("no_link", None, None), ("link_up", broker.url, None)]
        if tree == ROOT:
            runs += [("link_up_polling", broker.url, api), ("link_up_polling_played", broker.url, api)]
        for name, url, api_url in runs:
            directory = Path(tmp) / name
            directory.mkdir()
            _key(directory)
            _config(directory, backend="vlc", central_url=url, out=directory / "out.wav", api_url=api_url)
            result[name] = _idle(directory, seconds, tree, played=name.endswith("_played"))
    if not all(result[name]["connected"] for name, url, _ in runs if url):
        raise RuntimeError("the link was not up while the idle daemon was measured")
    return result


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run(
    commands: int = 120,
    records: int = 10_000,
    idle: float = 60.0,
    compare: str | None = BASE_REV,
) -> dict[str, Any]:
    """Every measurement, with the spool and the idle daemon also measured on git revision
    ``compare`` (when given and present) in the same run; the load average around each part."""
    result: dict[str, Any] = {"measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "load": {}}
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("spool", lambda: spool_delivery(records)),
        ("command", lambda: command_latency(commands)),
        ("idle", lambda: idle_footprint(idle)),
    ]
    if compare is not None and scale_bench.have(compare):
        result["before_rev"] = compare
        parts.insert(0, ("spool_before", lambda: _on_revision(compare, spool_delivery, records)))
        parts.append(("idle_before", lambda: _on_revision(compare, idle_footprint, idle)))
    for name, measure in parts:
        before = _load()
        result[name] = measure()
        result["load"][name] = (before, _load())
        print(name, result[name], flush=True)
    return result


def _on_revision(rev: str, measure: Callable[[Any, Path], dict[str, Any]], size: Any) -> dict[str, Any]:
    with scale_bench.exported(rev) as tree:
        return measure(size, tree)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.link_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--commands", type=int, default=120)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--only", choices=["command", "spool", "idle"])
    parser.add_argument(
        "--compare", default=BASE_REV, help="git revision for the before figures ('' for none)"
    )
    args = parser.parse_args()
    if args.only == "command":
        print(json.dumps(command_latency(args.commands), indent=2))
    elif args.only == "spool":
        print(json.dumps(spool_delivery(args.records), indent=2))
    elif args.only == "idle":
        print(json.dumps(idle_footprint(args.idle), indent=2))
    else:
        result = run(args.commands, args.records, args.idle, args.compare or None)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
