"""The link to the central server (docs/PROTOCOL.md), owned by the agent's main loop.

- Link state (up, since when, last contact) from the :mod:`agent.mqtt_client` events.
- Signed commands: each passes :func:`protocol.commands.verify_command` with the box's keys, its
  groups, the wall clock and the jti journal kept in the store (replays are refused across
  restarts).  A refusal is acked ``rejected`` (a replay ``duplicate``), logged and recorded as a
  ``command.refused`` event; nothing plays.  An accepted command is acked ``accepted`` and carried
  out through the front door (:class:`agent.commands.CommandHandler`), which answers ``done`` or
  ``rejected`` when the main loop has carried it out (a command queued behind what plays is acked
  when it starts).  ``stop``, ``set_volume`` and ``relay_test`` are handed over at once, from the
  main thread, and never wait.  A ``play_now`` fetches its audio first on the ``link-play`` worker,
  an ``emergency`` on a worker of its own (``link-emergency``), so an emergency never waits behind
  a ``play_now``'s download.  A stop (central or local) that comes while a play's audio is still
  being fetched cancels that play: it is acked ``rejected`` (``cancelled``) and never plays.  Acks
  go out in the order their answers come.
- Acks made while the link is down are spooled (in the store, in order, bounded) and sent after
  the next connect, before any newer ack.
- The retained ``state`` (agent/link_state.py): on connecting, for ``status``, and on change.
- Telemetry (agent/telemetry.py) is sampled here every pass that one is due, link up or down.
- The outbox: events, play-log records and telemetry are sent in ``seq`` order at QoS 1; the delivered cursor
  advances only over records the broker acknowledged, so an outage loses nothing and repeats at
  most what was unacknowledged (receivers drop repeats by id).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from agent.central_sync import AUDIO_NOT_CACHED, CommandAudioRefused
from agent.commands import Ack as Answer
from agent.commands import CommandHandler, Result
from agent.config import CentralConfig, Config
from agent.events import EventKind
from agent.link_state import StateFacts, StatePublisher
from agent.mqtt_client import LINK_EVENTS, LinkDown, LinkMessage, LinkUp, MqttClient, Published
from agent.store import PlayRecord, Store, iso
from agent.telemetry import Telemetry
from foundation.errors import ConfigError
from protocol.commands import LEEWAY, MAX_LIFETIME, Command, CommandRefused, Reason, verify_command
from protocol.json_wire import ProtocolError, format_time
from protocol.manifest import decode_manifest_notice
from protocol.messages import OUTCOMES, Ack, AckResult, Record, decode_status
from protocol.topics import Kind, device_topic, parse_topic

if TYPE_CHECKING:
    from agent.central_sync import CentralSync

logger = logging.getLogger(__name__)

SESSION_KEY = "link.session"
ACK_SPOOL_KEY = "link.unsent_acks"
MAX_SPOOLED_ACKS = 500  # acks kept while the link is down; beyond this the oldest are dropped
MAX_IN_FLIGHT = 100  # records sent and not yet acknowledged, per stream
COUNT_EVERY = 1.0  # seconds: the spool depth in status is counted at most this often
UNKNOWN_ID = "unknown"  # the ack id of a command whose jti could not be read
NOT_SUPPORTED = "not_supported"
ACTION_REFUSED = "refused"
CANCELLED = "cancelled"  # a play whose audio was still being fetched when a stop came
STREAMS = {"events": Kind.EVENTS, "play_log": Kind.PLAYLOG, "telemetry": Kind.TELEMETRY}


def load_signing_keys(central: CentralConfig, source: Path) -> list[Ed25519PublicKey]:
    keys, problems = [], []
    for index, path in enumerate(central.signing_public_key_files):
        where = f"{source}: central.signing_public_key_files[{index}]: {path}"
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{where}: cannot read a PEM public key ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(key, Ed25519PublicKey):
            problems.append(f"{where}: is not an Ed25519 key")
            continue
        keys.append(key)
    if problems:
        raise ConfigError(problems)
    return keys


def read_password(central: CentralConfig, source: Path) -> str | None:
    if central.password_file is None:
        return None
    try:
        return central.password_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:  # the message names the file, never its content
        raise ConfigError(
            [f"{source}: central.password_file: {central.password_file}: cannot read ({type(exc).__name__})"]
        ) from None


@dataclass
class _InFlight:
    seq: int
    acked: bool = False


class Link:
    """The agent's half of the protocol; every method but the worker's runs on the main thread."""

    sync: CentralSync | None = None  # the manifest and audio cache (agent.central_sync), set by the daemon

    def __init__(self, config: Config, central: CentralConfig, store: Store, commands: CommandHandler,
                 post: Callable[[object], None], keys: list[Ed25519PublicKey]) -> None:  # fmt: skip
        self.config = config
        self.central = central
        self.store = store
        self.commands = commands
        self.device_id = config.device.id
        self.groups = frozenset(central.groups)
        self.keys = keys  # the central server's, read once by the daemon (signing_keys)
        last = self.store.get_state(SESSION_KEY, 0)
        self.mqtt = MqttClient(
            self.device_id,
            central,
            post,
            last_session=last if isinstance(last, int) else 0,
            password=read_password(central, config.source),
        )
        self.up = False
        self.why_down: str | None = None  # the last reason the link went or stayed down
        self.session: int | None = None
        self.since: datetime | None = None  # when it went up, or down
        self.last_contact: datetime | None = None
        self._seen: set[str] = set()  # this run's jtis, also while the store cannot be written
        self._in_flight: dict[int, tuple[str, int]] = {}  # mid -> (stream, seq)
        self._sent: dict[str, list[_InFlight]] = {stream: [] for stream in STREAMS}
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue()  # play_now
        self._urgent: queue.Queue[Callable[[], None] | None] = queue.Queue()  # emergencies only
        self._workers = [
            threading.Thread(target=self._work_loop, args=(lane,), name=name, daemon=True)
            for lane, name in ((self._work, "link-play"), (self._urgent, "link-emergency"))
        ]
        self.state = StatePublisher(self._send_state)
        self._acks_lock = threading.Lock()  # ack() runs on the link-play, link-emergency and main threads
        spooled = self.store.get_state(ACK_SPOOL_KEY, [])
        self._unsent: list[str] = [str(p) for p in spooled] if isinstance(spooled, list) else []
        self._unsent_changed = False
        self._delivered: dict[str, int] = {}  # cursors advanced in memory, not yet written
        self._cursors_written = time.monotonic()
        self.telemetry = Telemetry(store, config.storage.dir, central.telemetry_interval)
        self._counted: tuple[float, dict[str, int]] | None = None  # (monotonic, spool depth)
        self._events_read: int | None = None  # the store's events_version when every event was read

    @staticmethod
    def is_event(event: object) -> bool:
        return isinstance(event, LINK_EVENTS)

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self.mqtt.start()

    def stop(self) -> None:
        self._write_cursors(force=True)
        self._work.put(None)
        self._urgent.put(None)
        for worker in self._workers:
            worker.join(timeout=5)
        self.mqtt.stop()

    # -- events from paho's thread, handled here on the main thread ------------------------------

    def on_event(self, event: object, now: datetime) -> None:
        if isinstance(event, LinkUp):
            self._went(True, now, f"connected, session {event.session}")
            self.why_down = None
            self.session = event.session
            self.store.put_state(SESSION_KEY, event.session)
            self.state.force()
        elif isinstance(event, LinkDown):
            if self.up:
                self._went(False, now, event.reason)
            elif event.reason != self.why_down:  # paho tries again and again: say each new reason once
                logger.warning("central link still down: %s", event.reason)
            self.why_down = event.reason
            self._forget_in_flight()
        elif isinstance(event, Published):
            self.last_contact = now
            self._acknowledged(event.mid)
        elif isinstance(event, LinkMessage):
            self.last_contact = now
            self._on_message(event, now)

    def _went(self, up: bool, now: datetime, why: str) -> None:
        self.up, self.since = up, now
        logger.log(
            logging.INFO if up else logging.WARNING, "central link %s: %s", "up" if up else "down", why
        )

    def _on_message(self, message: LinkMessage, now: datetime) -> None:
        try:
            topic = parse_topic(message.topic)
        except ProtocolError:
            logger.warning("ignoring a message on %s", message.topic)
            return
        if topic.kind == Kind.STATUS:
            self._repair_status(message.payload)
        elif topic.kind == Kind.CMD:
            self._on_command(message.payload, now)
        elif topic.kind == Kind.MANIFEST:
            self._on_manifest_notice(message.topic, message.payload)

    def _on_manifest_notice(self, topic: str, payload: bytes) -> None:
        if not payload:  # a retained notice cleared
            return
        try:
            notice = decode_manifest_notice(payload)
        except ProtocolError as error:
            logger.warning("ignoring a manifest notice on %s: %s", topic, error)
            return
        if self.sync is not None:
            self.sync.notice(notice.version)

    def _repair_status(self, payload: bytes) -> None:
        """A late will of an older session overwrote our retained status: say online again."""
        try:
            status = decode_status(payload)
        except ProtocolError:
            return
        if not status.online and status.session != self.session and self.up:
            logger.info(
                "a stale will (session %d) replaced our status: publishing online again", status.session
            )
            self.mqtt.republish_online()

    # -- commands ----------------------------------------------------------------------------------

    def _on_command(self, payload: bytes, now: datetime) -> None:
        token = payload.decode("ascii", errors="replace")
        try:
            command = verify_command(
                token, keys=self.keys, device_id=self.device_id, groups=self.groups, now=now,
                max_lifetime=MAX_LIFETIME, seen=self._was_seen,
            )  # fmt: skip
        except CommandRefused as refused:
            self._refused(refused)
            return
        self._seen.add(command.id)
        self.store.remember_command(command.id, command.expires_at, MAX_LIFETIME + LEEWAY)
        logger.info("central command %s (%s) accepted", command.id, command.name)
        # the main loop records its own event when it carries the command out: this one is the receipt
        verified = f"{command.id} {command.name} from central: signature verified"
        self.store.add_event(EventKind.COMMAND, verified)
        self.ack(command.id, AckResult.ACCEPTED)
        self._carry_out(command)

    def _was_seen(self, jti: str) -> bool:
        return jti in self._seen or self.store.command_seen(jti)

    def _refused(self, refused: CommandRefused) -> None:
        ident = refused.command_id or UNKNOWN_ID
        detail = "; ".join(str(problem) for problem in refused.problems)
        logger.warning("central command %s refused (%s): %s", ident, refused.reason.value, detail)
        self.store.add_event(EventKind.COMMAND_REFUSED, f"{ident}: {refused.reason.value}: {detail}")
        if refused.reason is Reason.DUPLICATE:
            self.ack(ident, AckResult.DUPLICATE, Reason.DUPLICATE.value, detail)
        else:
            self.ack(ident, AckResult.REJECTED, refused.reason.value, detail)

    def _carry_out(self, command: Command) -> None:
        fields = command.fields
        if command.name == "status":
            self.mqtt.republish_online()
            self.state.force()  # published by this pass's tick
            self.ack(command.id, AckResult.DONE)
        elif command.name == "sync_now":
            self.state.force()  # this pass's tick publishes the state and sends the outbox
            if self.sync is not None:
                self.sync.sync_now()
            self.ack(
                command.id, AckResult.DONE, message="state and outbox sent; manifest and audio check started"
            )
        elif command.name == "stop":  # handed over at once: it also cancels plays still fetching
            self._submit(command.id, "stop", {}, wait=0)
        elif command.name == "set_volume":
            self._submit(command.id, "set_volume", {"volume": fields["volume"]}, wait=0)
        elif command.name == "relay_test":
            test = {"zones": list(fields.get("zones") or []), "seconds": fields.get("seconds", 10)}
            self._submit(command.id, "relay_test", test, wait=0)
        elif command.name in ("play_now", "emergency"):
            self._carry_out_play(command)
        else:
            self.ack(command.id, AckResult.REJECTED, NOT_SUPPORTED, f"{command.name} is not supported yet")

    def _carry_out_play(self, command: Command) -> None:
        """``play_now`` or ``emergency`` (every zone unless given, at its volume, ``repeat`` times)."""
        fields, emergency = command.fields, command.name == "emergency"
        play = {
            "level": "emergency" if emergency else str(fields.get("level", "normal")),
            "zones": list(fields.get("zones") or []),
            "volume": fields.get("volume"),
            "repeat": int(fields.get("repeat", 1)) if emergency else 1,
        }
        sha256, url = str(fields["audio"]["sha256"]), fields["audio"].get("url")
        lane = self._urgent if emergency else self._work
        stops = self.commands.stops  # a stop submitted after this one arrived cancels it
        lane.put(lambda: self._play(command.id, sha256, url, play, stops))

    # -- the worker threads (link-play, link-emergency) ---------------------------------------------

    def _work_loop(self, lane: queue.Queue[Callable[[], None] | None]) -> None:
        while (job := lane.get()) is not None:
            try:
                job()
            except Exception:  # a bug in one command must not end the thread that serves the next
                logger.exception("central command failed")

    def _play(self, ident: str, sha256: str, url: str | None, play: dict[str, Any], stops: int) -> None:
        """The audio from the verified cache (fetched first when it is not there), then the front
        door, which cancels the play if a stop came after it arrived (``stops`` then)."""
        if self.sync is None:
            self.ack(ident, AckResult.REJECTED, AUDIO_NOT_CACHED, "this box has no audio cache")
            return
        try:
            path = self.sync.command_audio(sha256, url)
        except CommandAudioRefused as refused:
            logger.warning("central command %s: %s", ident, refused)
            self.ack(ident, AckResult.REJECTED, refused.reason, str(refused))
            return
        self._submit(ident, "play", {"file": str(path), "sha256": sha256, **play}, unless_stopped_since=stops)

    def _submit(
        self,
        ident: str,
        name: str,
        params: dict[str, Any],
        *,
        wait: float | None = None,
        unless_stopped_since: int | None = None,
    ) -> None:
        def final(answer: Answer) -> None:  # on the main thread, when a queued command resolves
            self._answered(ident, answer)

        answer = self.commands.submit(
            name, params, origin="central", command_id=ident, on_final=final, wait=wait,
            unless_stopped_since=unless_stopped_since,
        )  # fmt: skip
        self._answered(ident, answer)

    def _answered(self, ident: str, answer: Answer) -> None:
        if answer.result is Result.DONE:
            self.ack(ident, AckResult.DONE, message=answer.reason or None)
        elif answer.result is Result.REJECTED:
            reason = CANCELLED if answer.detail.get("cancelled") else ACTION_REFUSED
            self.ack(ident, AckResult.REJECTED, reason, answer.reason)
        elif answer.result is Result.DUPLICATE:
            self.ack(ident, AckResult.DUPLICATE, Reason.DUPLICATE.value, answer.reason)
        # accepted: the link acked that already; the final answer comes through on_final

    def ack(
        self, ident: str, result: AckResult, reason: str | None = None, message: str | None = None
    ) -> None:
        """Thread-safe; an ack made while the link is down (or behind spooled ones) is spooled."""
        payload = Ack(ident, result, datetime.now(UTC), reason, message).to_json()
        with self._acks_lock:
            if not self._unsent and self._publish_ack(payload):
                return
            self._unsent.append(payload)
            del self._unsent[:-MAX_SPOOLED_ACKS]
            self._unsent_changed = True

    def _publish_ack(self, payload: str) -> bool:
        return self.mqtt.publish(device_topic(self.device_id, Kind.ACK), payload, qos=1) is not None

    def _flush_acks(self) -> None:
        """Send spooled acks in order; keep what is left in the store (main thread)."""
        with self._acks_lock:
            while self._unsent and self.up and self._publish_ack(self._unsent[0]):
                self._unsent.pop(0)
                self._unsent_changed = True
            left = list(self._unsent) if self._unsent_changed else None
            self._unsent_changed = False
        if left is not None:
            self.store.put_state(ACK_SPOOL_KEY, left)

    def _send_state(self, payload: str) -> bool:
        topic = device_topic(self.device_id, Kind.STATE)
        return self.mqtt.publish(topic, payload, qos=1, retain=True) is not None

    # -- the outbox --------------------------------------------------------------------------------

    def tick(self, now: datetime, facts: StateFacts | None = None) -> None:
        """Send spooled acks, the state if due, and what the outbox holds beyond what is in flight
        (main loop, every pass)."""
        self.telemetry.tick(now, facts)
        self._flush_acks()
        if not self.up:
            return
        self.state.offer(facts, self.session or 0, now)
        for stream in STREAMS:
            self._advance(stream)
        self._write_cursors(force=False)
        self._send_events()
        self._send("play_log", [(seq, _play_data(record), None) for seq, record in self._fresh_plays()])
        samples = self.store.undelivered_telemetry(MAX_IN_FLIGHT, after=self._after("telemetry"))
        self._send("telemetry", [(int(row["seq"]), row["data"], row["at"]) for row in samples])

    def _after(self, stream: str) -> int:
        """The last seq sent or delivered: what comes next starts after it."""
        sent = self._sent[stream]
        return max(sent[-1].seq if sent else 0, self._delivered.get(stream, 0))

    def _room(self, stream: str) -> int:
        """How many more records of ``stream`` may be in flight: only these are read and built
        (each broker acknowledgement frees one, and each starts a pass)."""
        return MAX_IN_FLIGHT - len(self._sent[stream])

    def _send_events(self) -> None:
        room, version = self._room("events"), self.store.events_version
        if room <= 0 or version == self._events_read:  # none added since every one was sent
            return
        rows = self.store.undelivered_events(room, after=self._after("events"))
        sent_all = self._send("events", [(int(row["seq"]), _event_data(row), row["at"]) for row in rows])
        self._events_read = version if sent_all and len(rows) < room else None

    def _fresh_plays(self) -> list[tuple[int, PlayRecord]]:
        room = self._room("play_log")
        return self.store.undelivered_plays(room, after=self._after("play_log")) if room > 0 else []

    def _send(self, stream: str, records: list[tuple[int, dict[str, Any], str | None]]) -> bool:
        """Publish ``records`` in order; False when some could not be (the window or the link)."""
        sent = self._sent[stream]
        for seq, data, at in records:
            if len(sent) >= MAX_IN_FLIGHT:
                return False
            if stream == "play_log" and data["outcome"] not in OUTCOMES:
                # an outcome this protocol version cannot say is passed over, never sent
                sent.append(_InFlight(seq, acked=True))
                continue
            moment = datetime.fromisoformat(at) if at else datetime.now(UTC)
            record = Record(STREAMS[stream], self.device_id, seq, moment, data)
            mid = self.mqtt.publish(device_topic(self.device_id, STREAMS[stream]), record.to_json(), qos=1)
            if mid is None:
                return False
            self._in_flight[mid] = (stream, seq)
            sent.append(_InFlight(seq))
        return True

    def _acknowledged(self, mid: int) -> None:
        owner = self._in_flight.pop(mid, None)
        if owner is None:
            return  # an ack, a status, or a record of an earlier connection
        stream, seq = owner
        for entry in self._sent[stream]:
            if entry.seq == seq:
                entry.acked = True
        self._advance(stream)  # the cursor is written by tick, once per batch

    def _advance(self, stream: str) -> None:
        """Move the delivered cursor over the acknowledged records at the head, in order."""
        sent = self._sent[stream]
        delivered = None
        while sent and sent[0].acked:
            delivered = sent.pop(0).seq
        if delivered is not None:
            self._delivered[stream] = delivered

    def _write_cursors(self, *, force: bool) -> None:
        """Write the advanced cursors once per batch: when nothing is left in flight, or a second on.

        A cursor not yet written when the box dies only means records sent again (receivers drop
        repeats by id).
        """
        if not self._delivered:
            return
        due = force or time.monotonic() - self._cursors_written >= 1
        for stream in list(self._delivered):
            if due or not self._sent[stream]:
                self.store.mark_delivered(stream, self._delivered.pop(stream))
        self._cursors_written = time.monotonic() if due else self._cursors_written

    def _forget_in_flight(self) -> None:
        """Unacknowledged records are sent again from the cursor after the next connect."""
        self._write_cursors(force=True)
        self._in_flight.clear()
        self._events_read = None
        for sent in self._sent.values():
            sent.clear()

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "configured": True,
            "connected": self.up,
            "broker": self.central.mqtt_url,
            "session": self.session,
            "since": iso(self.since),
            "why_down": None if self.up else self.why_down,
            "last_contact": iso(self.last_contact),
            "spool": {**self._spool_depth(), "acks": len(self._unsent)},
        }

    def _spool_depth(self) -> dict[str, int]:
        """Records waiting per stream, counted at most every COUNT_EVERY seconds: the status board
        asks on every pass, and a pass per broker acknowledgement while 10,000 spooled records
        go out would otherwise count them all each time."""
        now = time.monotonic()
        if self._counted is None or now - self._counted[0] >= COUNT_EVERY:
            self._counted = (now, self.store.undelivered_counts())
        return self._counted[1]


def _event_data(row: dict[str, Any]) -> dict[str, Any]:
    return {"kind": row["kind"], "severity": row["severity"], "detail": {"text": row["detail"]}}


def _time(value: str | None) -> str | None:
    return format_time(datetime.fromisoformat(value)) if value else None


def _play_data(record: PlayRecord) -> dict[str, Any]:
    return {
        "key": record.key, "item_id": record.item_id, "audio": record.audio, "level": record.level,
        "zones": list(record.zones), "scheduled_start": _time(record.scheduled_start),
        "actual_start": _time(record.actual_start), "ended": _time(record.ended),
        "outcome": record.outcome, "reason": record.reason, "origin": record.origin,
    }  # fmt: skip
