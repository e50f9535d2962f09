"""MQTT topics of protocol version 1 (docs/PROTOCOL.md, "Topics").

A device's topics are ``loa/v1/<device_id>/<kind>``; a command to a group of devices goes to
``loa/v1/group/<group>/cmd``, a manifest notice to ``loa/v1/group/<group>/manifest``.  Device
ids, group names and kinds never hold ``/``, ``+`` or ``#``, so a topic parses back to exactly one
meaning: a device topic has three levels after ``loa/v1``' two, a group topic four.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.json_wire import DEVICE_ID, GROUP, ProtocolError

PREFIX = "loa/v1"


class Kind(StrEnum):
    """What a device topic carries, who sends it and how (QoS, retained) is in docs/PROTOCOL.md."""

    STATUS = "status"  # device -> all, retained, also the last will
    STATE = "state"  # device -> all, retained
    TELEMETRY = "telemetry"  # device -> central
    EVENTS = "events"  # device -> central
    PLAYLOG = "playlog"  # device -> central
    CMD = "cmd"  # central -> device, QoS 1, never retained
    ACK = "ack"  # device -> central
    MANIFEST = "manifest"  # central -> device, retained: the version of the device's schedule manifest


RETAINED = frozenset({Kind.STATUS, Kind.STATE, Kind.MANIFEST})
GROUP_KINDS = frozenset({Kind.CMD, Kind.MANIFEST})  # what a group topic may carry
_KINDS = frozenset(kind.value for kind in Kind)


@dataclass(frozen=True)
class Topic:
    """A parsed topic: exactly one of ``device_id`` and ``group`` is set (a group for ``cmd`` and
    ``manifest`` only)."""

    kind: Kind
    device_id: str | None = None
    group: str | None = None

    def __str__(self) -> str:
        if self.group is not None:
            return group_topic(self.group, self.kind)
        assert self.device_id is not None
        return device_topic(self.device_id, self.kind)


def _check(name: str, value: str, pattern_ok: bool, expected: str) -> None:
    if not pattern_ok:
        raise ProtocolError("topic", [f"{name} {value!r}: expected {expected}"])


def device_topic(device_id: str, kind: Kind) -> str:
    """``loa/v1/<device_id>/<kind>``."""
    _check("device id", device_id, bool(DEVICE_ID.fullmatch(device_id)), "lowercase letters, digits, '-'")
    return f"{PREFIX}/{device_id}/{Kind(kind).value}"


def group_topic(group: str, kind: Kind = Kind.CMD) -> str:
    """``loa/v1/group/<group>/cmd`` or ``.../manifest``: the two topics a group has."""
    _check("group", group, bool(GROUP.fullmatch(group)), "lowercase letters, digits, '-'")
    _check("group topic kind", str(kind), kind in GROUP_KINDS, "cmd or manifest")
    return f"{PREFIX}/group/{group}/{Kind(kind).value}"


def parse_topic(topic: str) -> Topic:
    """The meaning of a v1 topic, or :class:`ProtocolError`."""
    parts = topic.split("/")
    if parts[:2] != PREFIX.split("/"):
        raise ProtocolError("topic", [f"{topic!r} is not under {PREFIX}/"])
    if len(parts) == 5 and parts[2] == "group" and parts[4] in GROUP_KINDS:
        _check("group", parts[3], bool(GROUP.fullmatch(parts[3])), "lowercase letters, digits, '-'")
        return Topic(Kind(parts[4]), group=parts[3])
    if len(parts) == 4 and parts[3] in _KINDS:
        _check("device id", parts[2], bool(DEVICE_ID.fullmatch(parts[2])), "lowercase letters, digits, '-'")
        return Topic(Kind(parts[3]), device_id=parts[2])
    raise ProtocolError(
        "topic", [f"{topic!r}: expected {PREFIX}/<device>/<kind> or {PREFIX}/group/<g>/cmd (or /manifest)"]
    )


def device_subscriptions(device_id: str, groups: frozenset[str]) -> list[str]:
    """What a device subscribes to: its own ``cmd``, ``status`` (to repair a stale will) and
    ``manifest`` notice, and the ``cmd`` and ``manifest`` of its groups."""
    own = [device_topic(device_id, kind) for kind in (Kind.CMD, Kind.STATUS, Kind.MANIFEST)]
    return own + [group_topic(group, kind) for group in sorted(groups) for kind in (Kind.CMD, Kind.MANIFEST)]


def central_subscriptions() -> list[str]:
    """What the central server subscribes to: everything every device sends."""
    sent = (Kind.STATUS, Kind.STATE, Kind.TELEMETRY, Kind.EVENTS, Kind.PLAYLOG, Kind.ACK)
    return [f"{PREFIX}/+/{kind.value}" for kind in sent]
