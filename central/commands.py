"""Commands to boxes: signed with protocol.commands (EdDSA), published on each audience's ``cmd`` topic,
and followed by their acks, one row per target box.

Targets name boxes (each gets its own token, ``aud`` its device id) or units (one token per unit,
``aud: group:<unit>``, on ``loa/v1/group/<unit>/cmd``: the broker fans it out, which is what makes an
emergency to a whole province fast).  A command's fields are checked by the protocol's own reader
before anything is stored or sent.
"""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.sql.dml import Insert

from central import db, registry
from central.access import Scope
from central.context import Central
from central.targets import target_devices
from foundation.errors import LoaError
from protocol.commands import COMMANDS, CommandRefused, sign_command
from protocol.json_wire import format_time
from protocol.messages import Ack, AckResult
from protocol.topics import Kind, device_topic, group_topic

logger = logging.getLogger(__name__)

# An ack replaces what a target's row says only if it is as final or more: accepted < the rest.
_RANK = {AckResult.ACCEPTED.value: 0, AckResult.DONE.value: 1, AckResult.REJECTED.value: 1,
         AckResult.DUPLICATE.value: 1}  # fmt: skip


class CommandError(LoaError, ValueError):
    """A command that cannot be sent as asked (HTTP 422)."""


def new_id(now: datetime) -> str:
    return f"cmd-{now:%Y%m%d}-{secrets.token_hex(6)}"


def send(
    central: Central, scope: Scope, name: str, fields: dict[str, Any], targets: dict[str, list[str]]
) -> str:
    """Sign, store and publish a command; its id."""
    scope.require_writer("send commands")
    if name not in COMMANDS:
        raise CommandError(f"type {name!r}: expected one of {', '.join(COMMANDS)}")
    devices = target_devices(central.engine, scope.units, targets)
    scope.require_units(devices, "command")
    now = central.clock()
    ident = new_id(now)
    expires = now + central.config.command_lifetime
    plan = _plan(scope.units, devices, targets)
    tokens = [(audience, _sign(central, ident, name, fields, audience, now, expires), reached)
              for audience, reached in plan]  # fmt: skip
    with central.engine.begin() as conn:
        conn.execute(
            insert(db.commands).values(
                id=ident,
                type=name,
                fields=fields,
                targets=targets,
                created_by=scope.user.name,
                created_at=now,
                expires_at=expires,
            )
        )
        conn.execute(
            insert(db.command_targets),
            [
                {"command_id": ident, "device_id": device, "audience": audience}
                for audience, _t, reached in tokens
                for device in reached
            ],
        )
    registry.record_audit(central.engine, scope.user.name, "command.send", ident,
                          {"type": name, "fields": fields, "targets": targets})  # fmt: skip
    messages = [(_topic(audience), token) for audience, token, _reached in tokens]
    # all at once, then wait for the broker: one round trip per box in turn took 3 s for 1,000 boxes
    for (audience, _t, _r), taken in zip(tokens, central.publisher.publish_all(messages), strict=True):
        if not taken:
            logger.error("command %s to %s: the broker did not take it", ident, audience)
    return ident


def _topic(audience: str) -> str:
    if audience.startswith("group:"):
        return group_topic(audience.removeprefix("group:"))
    return device_topic(audience, Kind.CMD)


def _plan(units: dict[str, registry.Unit], devices: dict[str, str], targets: dict[str, list[str]]
          ) -> list[tuple[str, list[str]]]:  # fmt: skip
    """``(aud, boxes it reaches)``: one per box named, or one group per unit named."""
    if targets.get("devices"):
        return [(device, [device]) for device in sorted(devices)]
    named = sorted({unit for kind, names in targets.items() if kind != "devices" for unit in names})
    plan = []
    for unit in named:
        below = registry.subtree(units, unit)
        plan.append((f"group:{unit}", sorted(device for device, at in devices.items() if at in below)))
    return plan


def _sign(central: Central, ident: str, name: str, fields: dict[str, Any], audience: str, now: datetime,
          expires: datetime) -> str:  # fmt: skip
    """The token for one audience; CommandError if the protocol refuses the fields."""
    claims = {"jti": ident, "aud": audience, "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
              "cmd": name, **fields}  # fmt: skip
    try:
        return sign_command(claims, central.key.private, kid=central.key.kid)
    except CommandRefused as refused:
        raise CommandError("; ".join(str(problem) for problem in refused.problems)) from None


_targets = db.command_targets.c
_TARGET = select(_targets.result).where(
    _targets.command_id == bindparam("command"), _targets.device_id == bindparam("device")
)
_MOVE_TARGET = (
    update(db.command_targets)
    .where(_targets.command_id == bindparam("command"), _targets.device_id == bindparam("device"))
    .values(result=bindparam("v_result"), reason=bindparam("v_reason"), message=bindparam("v_message"),
            acked_at=bindparam("v_at", type_=_targets.acked_at.type))
)  # fmt: skip


@functools.cache
def _insert_ack(engine: Engine) -> Insert:
    return db.insert_ignoring_duplicates(engine, db.acks, ["command_id", "device_id", "result", "at"])


def record_ack(conn: Connection, device_id: str, ack: Ack) -> bool:
    """Store an ack (once, however often it comes) and move the target's row on; False if unknown.

    In the caller's transaction (ingest stores a batch of messages in one), with statements built
    once: ingest takes a thousand acks within a second after an emergency to a province."""
    keys = {"command": ack.id, "device": device_id}
    target = conn.execute(_TARGET, keys).first()
    if target is None:
        return False
    row = {"command_id": ack.id, "device_id": device_id, "result": ack.result.value, "reason": ack.reason,
           "message": ack.message, "at": ack.at}  # fmt: skip
    conn.execute(_insert_ack(conn.engine), row)
    if target.result is None or _RANK[ack.result.value] >= _RANK.get(target.result, 0):
        conn.execute(_MOVE_TARGET, keys | {"v_result": ack.result.value, "v_reason": ack.reason,
                                           "v_message": ack.message, "v_at": ack.at})  # fmt: skip
    return True


def status(engine: Engine, scope: Scope, ident: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        command = conn.execute(select(db.commands).where(db.commands.c.id == ident)).first()
        if command is None:
            return None
        rows = conn.execute(
            select(db.command_targets, db.devices.c.unit)
            .join(db.devices, db.devices.c.id == db.command_targets.c.device_id)
            .where(db.command_targets.c.command_id == ident)
            .order_by(db.command_targets.c.device_id)
        ).all()
    visible = [row for row in rows if scope.sees_unit(row.unit)]
    if not visible:
        return None
    return {
        "id": command.id,
        "type": command.type,
        "fields": command.fields,
        "targets": command.targets,
        "created_by": command.created_by,
        "created_at": format_time(command.created_at),
        "expires_at": format_time(command.expires_at),
        "acks": {
            row.device_id: {
                "audience": row.audience,
                "result": row.result,
                "reason": row.reason,
                "message": row.message,
                "at": format_time(row.acked_at) if row.acked_at else None,
            }
            for row in visible
        },
    }
