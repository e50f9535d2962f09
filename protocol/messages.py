"""The JSON messages of protocol version 1 (docs/PROTOCOL.md): encode, and decode strictly.

Every decoder takes the bytes as they came off the wire and returns a typed value or raises
:class:`~protocol.json_wire.ProtocolError` listing every problem with its key path.

- :class:`StatusMessage` (``status``, retained, also the last will) with the session rule of
  :func:`status_applies`, after Sparkplug's bdSeq: a will only counts for the session it was
  written for, so a stale will never marks a newer session offline.
- :class:`StateMessage` (``state``, retained): what plays, relays, volume, schedule versions, clock.
- :class:`Record` (``telemetry``, ``events``, ``playlog``): an envelope whose id is
  ``<device_id>:<seq>``, unique per topic, so a receiver drops what it already has.
- :class:`Ack` (``ack``): the answer to a command, by its ``jti``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from foundation.findings import FindingList, KeyPath, did_you_mean
from protocol.json_wire import (
    DEVICE_ID,
    SCHEMA_VERSION,
    Fields,
    ProtocolError,
    decode_object,
    encode,
    format_time,
    raise_if_any,
)
from protocol.topics import Kind

MAX_SEQ = 2**53 - 1  # JSON numbers stay exact up to here in every language
COMMAND_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
LEVELS = ("normal", "priority", "emergency")
# "waiting" (queued behind what plays) and "playing" are not final: a later record replaces them
OUTCOMES = ("waiting", "playing", "completed", "interrupted", "failed", "missed", "skipped")
SEVERITIES = ("info", "warning", "error")


class AckResult(StrEnum):
    ACCEPTED = "accepted"
    DONE = "done"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Ack:
    """``reason`` is a stable code (docs/PROTOCOL.md, "Reason codes"), required when rejected."""

    id: str
    result: AckResult
    at: datetime
    reason: str | None = None
    message: str | None = None

    def to_json(self) -> str:
        value: dict[str, Any] = {"v": SCHEMA_VERSION, "id": self.id, "result": self.result.value}
        value |= {"reason": self.reason, "message": self.message, "at": format_time(self.at)}
        return encode(value)


def decode_ack(data: str | bytes) -> Ack:
    raw, findings = decode_object(data, "ack"), FindingList()
    fields = Fields(raw, (), findings)
    fields.version()
    ident = fields.text("id", COMMAND_ID, expected="a command id (the command's jti)")
    result = fields.choice("result", [r.value for r in AckResult])
    reason = fields.text("reason", REASON, required=False, nullable=True, expected="a reason code")
    message = fields.text("message", required=False, nullable=True)
    at = fields.time("at")
    if result == AckResult.REJECTED and reason is None:
        fields.bad("reason", "a reason code: a rejection always says why")
    fields.finish()
    raise_if_any("ack", findings)
    assert ident is not None and result is not None and at is not None
    return Ack(ident, AckResult(result), at, reason, message)


# -- status: online / offline with the session they belong to -------------------------------------


@dataclass(frozen=True)
class StatusMessage:
    """``session`` grows by one at each connection (kept in the store); the will carries it too."""

    online: bool
    session: int
    at: datetime  # when it was written: for a will, when its session connected

    def to_json(self) -> str:
        status = "online" if self.online else "offline"
        return encode(
            {"v": SCHEMA_VERSION, "status": status, "session": self.session, "at": format_time(self.at)}
        )


def decode_status(data: str | bytes) -> StatusMessage:
    raw, findings = decode_object(data, "status"), FindingList()
    fields = Fields(raw, (), findings)
    fields.version()
    status = fields.choice("status", ["online", "offline"])
    session = fields.whole("session", 0, MAX_SEQ)
    at = fields.time("at")
    fields.finish()
    raise_if_any("status", findings)
    assert status is not None and session is not None and at is not None
    return StatusMessage(status == "online", session, at)


def status_applies(current: StatusMessage | None, incoming: StatusMessage) -> bool:
    """Whether ``incoming`` changes what a receiver believes, given the status it holds.

    ``online`` is only ever sent by a live connection, so it always applies.  ``offline`` applies
    only to the session it names: a will that the broker delivers late, after the box has already
    reconnected, names an older session and is ignored.  Equality, not order, so a box whose
    counter restarted (a new SD card) is still understood.
    """
    return incoming.online or current is None or current.session == incoming.session


# -- state: the retained snapshot ------------------------------------------------------------------


@dataclass(frozen=True)
class Playing:
    source: str  # "item" (a schedule item or a command) or "fm"
    zones: tuple[str, ...]
    started: datetime
    item_id: str | None = None
    level: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class StateMessage:
    session: int
    at: datetime
    playing: Playing | None
    relays_on: tuple[str, ...]
    volume: int
    schedules: Mapping[str, str]  # origin -> version in force
    clock_trusted: bool
    clock_source: str | None  # "ntp", "central", "watermark" ... or None while untrusted

    def to_json(self) -> str:
        value: dict[str, Any] = {"v": SCHEMA_VERSION, "session": self.session, "at": format_time(self.at)}
        value["playing"] = _playing_json(self.playing) if self.playing else None
        value |= {"relays_on": list(self.relays_on), "volume": self.volume, "schedules": dict(self.schedules)}
        value["clock"] = {"trusted": self.clock_trusted, "source": self.clock_source}
        return encode(value)


def _playing_json(playing: Playing) -> dict[str, Any]:
    value: dict[str, Any] = {"source": playing.source, "zones": list(playing.zones)}
    value |= {"started": format_time(playing.started), "item_id": playing.item_id}
    return value | {"level": playing.level, "origin": playing.origin}


def decode_state(data: str | bytes) -> StateMessage:
    raw, findings = decode_object(data, "state"), FindingList()
    fields = Fields(raw, (), findings)
    fields.version()
    session = fields.whole("session", 0, MAX_SEQ)
    at = fields.time("at")
    playing = _decode_playing(fields, findings)
    relays_on = fields.zones("relays_on", required=True, empty=True)
    volume = fields.whole("volume", 0, 100)
    schedules = fields.get("schedules", dict, "an object of origin: version")
    clock = Fields(fields.get("clock", dict, "an object"), ("clock",), findings)
    trusted = clock.get("trusted", bool, "true or false")
    source = clock.text("source", TOKEN, nullable=True, expected="a clock source such as ntp")
    clock.finish()
    if schedules is not None and not all(
        TOKEN.fullmatch(k) and isinstance(v, str) and 0 < len(v) <= 128 for k, v in schedules.items()
    ):
        fields.bad("schedules", "an object of origin: version, each a short string")
    fields.finish()
    raise_if_any("state", findings)
    assert session is not None and at is not None and volume is not None and trusted is not None
    return StateMessage(
        session, at, playing, tuple(relays_on or ()), volume, dict(schedules or {}), trusted, source
    )


def _decode_playing(fields: Fields, findings: FindingList) -> Playing | None:
    fields.asked.add("playing")
    if fields.raw.get("playing", 0) is None:
        return None
    raw = fields.get("playing", dict, "null or an object")
    if raw is None:
        return None
    sub = Fields(raw, ("playing",), findings)
    source = sub.choice("source", ["item", "fm"])
    zones = sub.zones("zones", required=True)
    started = sub.time("started")
    item_id = sub.text("item_id", required=False, nullable=True)
    level = sub.choice("level", LEVELS, required=False) if raw.get("level") is not None else None
    sub.asked.add("level")
    origin = sub.text("origin", TOKEN, required=False, nullable=True, expected="an origin such as local")
    sub.finish()
    if source is None or zones is None or started is None:
        return None
    return Playing(source, zones, started, item_id, level, origin)


# -- records: telemetry, events, play log ----------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record a device sends on ``stream``; ``id`` is ``<device_id>:<seq>``, unique per stream."""

    stream: Kind
    device_id: str
    seq: int
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.device_id}:{self.seq}"

    def to_json(self) -> str:
        return encode(
            {"v": SCHEMA_VERSION, "id": self.id, "at": format_time(self.at), "data": dict(self.data)}
        )


def decode_record(stream: Kind, data: str | bytes, device_id: str | None = None) -> Record:
    """A record from ``stream``'s topic; ``device_id`` (from the topic) must match the record's id."""
    what = f"{Kind(stream).value} record"
    if stream not in _DATA_CHECKS:
        raise ProtocolError(what, [f"{stream} carries no records"])
    raw, findings = decode_object(data, what), FindingList()
    fields = Fields(raw, (), findings)
    fields.version()
    ident = fields.text("id", expected="<device_id>:<seq>, e.g. xa-quang-son-01:42")
    at = fields.time("at")
    body = Fields(fields.get("data", dict, "an object"), ("data",), findings)
    _DATA_CHECKS[stream](body)
    body.finish()
    fields.finish()
    owner, seq = _split_id(ident, fields)
    if owner is not None and device_id is not None and owner != device_id:
        fields.bad("id", f"an id of device {device_id}, whose topic it came on")
    raise_if_any(what, findings)
    assert owner is not None and seq is not None and at is not None
    return Record(Kind(stream), owner, seq, at, body.raw)


def _split_id(ident: str | None, fields: Fields) -> tuple[str | None, int | None]:
    if ident is None:
        return None, None
    owner, _, seq = ident.partition(":")
    if not DEVICE_ID.fullmatch(owner) or not seq.isascii() or not seq.isdigit() or len(seq) > 16:
        fields.bad("id", "<device_id>:<seq>, e.g. xa-quang-son-01:42")
        return None, None
    if not 1 <= int(seq) <= MAX_SEQ:
        fields.bad("id", f"a seq from 1 to {MAX_SEQ}")
        return None, None
    return owner, int(seq)


def _event_data(body: Fields) -> None:
    body.text("kind", TOKEN, expected="an event kind such as clock.trusted")
    body.choice("severity", SEVERITIES)
    body.get("detail", dict, "an object")


def _playlog_data(body: Fields) -> None:
    body.text("key", expected="the occurrence key")
    body.text("item_id", expected="the item id")
    body.text("audio", expected="the audio played (path or sha256)")
    body.choice("level", LEVELS)
    body.zones("zones", required=True, empty=True)
    body.time("scheduled_start")
    body.time("actual_start", nullable=True)
    body.time("ended", nullable=True)
    body.choice("outcome", OUTCOMES)
    body.text("reason")
    body.text("origin", TOKEN, expected="an origin such as local, local-command, central")


TELEMETRY_KEYS = (
    "cpu_temp_c", "load_1m", "mem_used_pct", "disk_free_mb", "uptime_s", "clock_trusted", "clock_source",
    "on_battery", "cache_used_mb", "cache_missing", "relays_on",
)  # fmt: skip
SECTION = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a telemetry section's name, and its readings' names
MAX_SECTIONS = 16
MAX_READINGS = 32
MAX_READING_CHARS = 256


def _telemetry_data(body: Fields) -> None:
    body.number("cpu_temp_c", -50, 150)
    body.number("load_1m", 0, 1000)
    body.number("mem_used_pct", 0, 100)
    body.whole("disk_free_mb", 0, 10**9, required=False)
    body.whole("uptime_s", 0, 10**10, required=False)
    body.get("clock_trusted", bool, "true or false", required=False)
    body.text("clock_source", TOKEN, required=False, nullable=True, expected="a clock source such as ntp")
    body.get("on_battery", bool, "true or false", required=False)
    body.whole("cache_used_mb", 0, 10**9, required=False)
    body.whole("cache_missing", 0, 10**6, required=False)
    body.zones("relays_on", empty=True)
    sections = [key for key in body.raw if key not in TELEMETRY_KEYS]
    if len(sections) > MAX_SECTIONS:
        body.findings.add(body.path, f"{len(sections)} sections", f"at most {MAX_SECTIONS} sections")
    for name in sections:
        if SECTION.fullmatch(name):  # else finish() refuses it as an unknown key
            body.asked.add(name)
            telemetry_section_problems(body.raw[name], (*body.path, name), body.findings)


def telemetry_section_problems(value: object, path: KeyPath, findings: FindingList) -> None:
    """A section another module of the box adds to telemetry (modem, mains, amplifier, ...): an
    object of at most 32 readings, each null, true/false, a finite number or a short string."""
    if not isinstance(value, dict):
        hint = did_you_mean(path[-1], TELEMETRY_KEYS)  # a misspelt reading reads as a section
        findings.add(path, value, "a section: an object of readings", hint)
        return
    if len(value) > MAX_READINGS:
        findings.add(path, f"{len(value)} readings", f"at most {MAX_READINGS} readings")
    for key, reading in value.items():
        ok = reading is None or isinstance(reading, bool | str) or (
            isinstance(reading, int | float) and math.isfinite(reading)
        )  # fmt: skip
        if isinstance(reading, str) and len(reading) > MAX_READING_CHARS:
            ok = False
        if not SECTION.fullmatch(key) or not ok:
            expected = "a reading name ([a-z0-9_]) with null, true/false, a number or a short string"
            findings.add((*path, key), reading, expected)


_DATA_CHECKS: dict[Kind, Callable[[Fields], None]] = {
    Kind.EVENTS: _event_data,
    Kind.PLAYLOG: _playlog_data,
    Kind.TELEMETRY: _telemetry_data,
}
