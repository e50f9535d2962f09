"""Simulated boxes for bench/central_bench.py: many lightweight MQTT clients in one process.

Each box is a paho client with its own broker account (its device id and the password the
registry gave it), so the embedded Mosquitto checks its password and its ACL as for a real box.
One thread drives every client of the process through a selector (paho's external-loop API:
``loop_read``, ``loop_write``, ``loop_misc``) instead of one network thread per client.

What a box does, with the protocol package's own encoders (docs/PROTOCOL.md):

- on connecting: subscribe to its ``cmd``, ``status`` and its groups' ``cmd`` (as the agent does),
  publish ``status`` online and ``state`` (retained), and one event record;
- every ``telemetry_every`` seconds (random phase): a telemetry record (QoS 0);
- once per steady phase: a play-log record ``playing``, then the same occurrence ``completed``
  ``play_s`` later under a higher seq (QoS 1);
- on a command: verify the JWT as the agent does (``protocol.commands.verify_command`` with the
  central's public key), ack ``accepted`` at once, then ``done`` and a ``state`` that plays
  ``DONE_AFTER`` seconds later (a box's libVLC start);
- on ``burst``: send ``n`` spooled event records at once (a box's outbox after an outage).

The orchestrator drives a worker through a ``multiprocessing`` pipe; times are wall-clock
(``time.time()``) so that they compare with the orchestrator's and the central's records.
"""

from __future__ import annotations

import functools
import heapq
import random
import resource
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from paho.mqtt.enums import CallbackAPIVersion

from protocol.commands import MAX_LIFETIME, CommandRefused, verify_command
from protocol.messages import Ack, AckResult, Playing, Record, StateMessage, StatusMessage
from protocol.topics import Kind, device_subscriptions, device_topic

DONE_AFTER = 0.3  # seconds from accepted to done: about a box's libVLC start
AUDIO = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@dataclass(frozen=True)
class BoxAccount:
    device_id: str
    password: str
    groups: tuple[str, ...]


@dataclass
class CommandSeen:
    device_id: str
    command_id: str
    received: float
    acked: float
    result: str  # accepted, or the refusal's reason code


@dataclass
class Counts:
    telemetry: int = 0
    playlog: int = 0
    events: int = 0
    acks: int = 0
    refused_connects: int = 0


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``needed`` (up to the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Box:
    """One simulated box: its client, its seq counter and its timers."""

    def __init__(self, fleet: Fleet, account: BoxAccount) -> None:
        self.fleet, self.account = fleet, account
        self.device_id = account.device_id
        self.seq = 0
        self.session = 0
        self.subscribed = False
        self.seen_commands: set[str] = set()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.device_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(self.device_id, account.password)
        self.client.max_inflight_messages_set(50)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        will = StatusMessage(False, self.session + 1, datetime.now(UTC)).to_json()
        self.client.will_set(self.topic(Kind.STATUS), will, qos=1, retain=True)

    def topic(self, kind: Kind) -> str:
        return device_topic(self.device_id, kind)

    def record(self, kind: Kind, data: dict[str, Any], qos: int) -> None:
        self.seq += 1
        payload = Record(kind, self.device_id, self.seq, datetime.now(UTC), data).to_json()
        self.client.publish(self.topic(kind), payload, qos=qos)

    def state(self, playing: Playing | None) -> None:
        message = StateMessage(self.session, datetime.now(UTC), playing, ("zone-1",) if playing else (),
                               80, {"central": "1"}, True, "ntp")  # fmt: skip
        self.client.publish(self.topic(Kind.STATE), message.to_json(), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.fleet.counts.refused_connects += 1
            return
        self.session += 1
        client.subscribe(
            [(topic, 1) for topic in device_subscriptions(self.device_id, frozenset(self.account.groups))]
        )
        online = StatusMessage(True, self.session, datetime.now(UTC)).to_json()
        client.publish(self.topic(Kind.STATUS), online, qos=1, retain=True)
        self.state(None)
        self.record(
            Kind.EVENTS, {"kind": "clock.trusted", "severity": "info", "detail": {"source": "ntp"}}, 1
        )
        self.fleet.counts.events += 1

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed = True

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/cmd"):
            self.fleet.command(self, message.payload.decode("ascii", "replace"))

    def telemetry(self) -> None:
        data = {"cpu_temp_c": round(random.uniform(40, 60), 1), "load_1m": 0.3, "mem_used_pct": 38.0,
                "disk_free_mb": 11234, "uptime_s": 86400, "clock_trusted": True, "relays_on": []}  # fmt: skip
        self.record(Kind.TELEMETRY, data, 0)
        self.fleet.counts.telemetry += 1

    def playlog(self, key: str, scheduled: datetime, outcome: str) -> None:
        ended = datetime.now(UTC) if outcome == "completed" else None
        data: dict[str, Any] = {
                "key": key, "item_id": "ban-tin-sang", "audio": AUDIO, "level": "normal", "zones": [],
                "scheduled_start": _ms(scheduled), "actual_start": _ms(scheduled),
                "ended": None if ended is None else _ms(ended), "outcome": outcome, "reason": "",
                "origin": "central"}  # fmt: skip
        self.record(Kind.PLAYLOG, data, 1)
        self.fleet.counts.playlog += 1


def _ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(order=True)
class Timer:
    at: float
    order: int
    action: Callable[[], None] = field(compare=False)


class Fleet:
    """Every box of one worker process, driven by one selector loop."""

    def __init__(self, accounts: list[BoxAccount], public_key_pem: bytes) -> None:
        key = load_pem_public_key(public_key_pem)
        assert isinstance(key, Ed25519PublicKey)
        self.keys = [key]
        self.counts = Counts()
        self.commands: list[CommandSeen] = []
        self.boxes = [Box(self, account) for account in accounts]
        self.selector = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self._order = 0

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self.timers, Timer(time.monotonic() + delay, self._order, action))

    def connect(self, host: str, port: int) -> None:
        for box in self.boxes:
            box.client.connect(host, port, keepalive=60)
            sock = box.client.socket()
            assert sock is not None
            self.selector.register(sock, selectors.EVENT_READ, box)

    def command(self, box: Box, token: str) -> None:
        received = time.time()
        try:
            command = verify_command(
                token, keys=self.keys, device_id=box.device_id, groups=frozenset(box.account.groups),
                now=datetime.now(UTC), max_lifetime=MAX_LIFETIME, seen=box.seen_commands.__contains__,
            )  # fmt: skip
        except CommandRefused as refused:
            ack = Ack(refused.command_id or "unknown", AckResult.REJECTED, datetime.now(UTC),
                      refused.reason.value, str(refused))  # fmt: skip
            box.client.publish(box.topic(Kind.ACK), ack.to_json(), qos=1)
            self.commands.append(
                CommandSeen(box.device_id, ack.id, received, time.time(), refused.reason.value)
            )
            return
        box.seen_commands.add(command.id)
        box.client.publish(
            box.topic(Kind.ACK), Ack(command.id, AckResult.ACCEPTED, datetime.now(UTC)).to_json(), qos=1
        )
        self.commands.append(CommandSeen(box.device_id, command.id, received, time.time(), "accepted"))
        self.counts.acks += 1

        def done() -> None:
            box.client.publish(
                box.topic(Kind.ACK), Ack(command.id, AckResult.DONE, datetime.now(UTC)).to_json(), qos=1
            )
            box.state(Playing("item", ("zone-1",), datetime.now(UTC), command.id, "emergency", "central"))
            self.counts.acks += 1

        self.later(DONE_AFTER, done)

    def steady(self, seconds: float, telemetry_every: float, play_s: float) -> None:
        """Telemetry every ``telemetry_every`` s and one play-log occurrence per box, for ``seconds``."""
        for box in self.boxes:
            rounds = int(seconds // telemetry_every)
            phase = random.uniform(0, telemetry_every)
            for n in range(rounds):
                self.later(phase + n * telemetry_every, box.telemetry)
            start = random.uniform(0, max(seconds - play_s - 1, 1))
            self.later(start, functools.partial(self._play, box, play_s))

    def _play(self, box: Box, play_s: float) -> None:
        scheduled = datetime.now(UTC)
        key = f"ban-tin-sang@{scheduled.isoformat()}"
        box.playlog(key, scheduled, "playing")
        self.later(play_s, lambda: box.playlog(key, scheduled, "completed"))

    def burst(self, per_box: int) -> None:
        for box in self.boxes:
            for n in range(per_box):
                box.record(Kind.EVENTS, {"kind": "spooled", "severity": "info", "detail": {"n": n}}, 1)
                self.counts.events += 1
            self._flush(box)

    def step(self, timeout: float) -> None:
        """One pass: due timers, then readable sockets, then pending writes."""
        now = time.monotonic()
        while self.timers and self.timers[0].at <= now:
            heapq.heappop(self.timers).action()
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0].at - time.monotonic()))
        for key, _events in self.selector.select(timeout):
            box: Box = key.data
            box.client.loop_read()
            self._flush(box)
        for box in self.boxes:
            if box.client.want_write():
                self._flush(box)

    def _flush(self, box: Box) -> None:
        if box.client.want_write():
            box.client.loop_write()

    def keepalive(self) -> None:
        for box in self.boxes:
            box.client.loop_misc()

    def ready(self) -> int:
        return sum(box.subscribed for box in self.boxes)

    def close(self) -> None:
        for box in self.boxes:
            box.client.disconnect()
            self._flush(box)


def worker(accounts: list[BoxAccount], host: str, port: int, public_key_pem: bytes, pipe: Connection) -> None:
    """A worker process: connect every box, then obey the orchestrator's pipe until ``stop``."""
    raise_fd_limit(len(accounts) * 2 + 64)
    fleet = Fleet(accounts, public_key_pem)
    started = time.time()
    fleet.connect(host, port)
    last_misc = time.monotonic()
    announced = False
    while True:
        fleet.step(0.05)
        if time.monotonic() - last_misc >= 1.0:
            fleet.keepalive()
            last_misc = time.monotonic()
        if not announced and fleet.ready() == len(fleet.boxes):
            pipe.send(("ready", time.time() - started, fleet.counts.refused_connects))
            announced = True
        if not pipe.poll():
            continue
        message = pipe.recv()
        if message[0] == "steady":
            fleet.steady(*message[1:])
        elif message[0] == "burst":
            fleet.burst(message[1])
            pipe.send(("burst-sent", time.time()))
        elif message[0] == "report":
            pipe.send(("report", fleet.counts, fleet.commands, fleet.ready()))
        elif message[0] == "stop":
            fleet.close()
            pipe.send(("stopped",))
            return
