"""The registry: units (a tree whose levels are data), boxes and their broker credentials, operators,
API tokens and the audit log.  Every function takes the engine; nothing here knows HTTP or MQTT."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from central import db
from central.passwords import token_digest
from foundation.errors import LoaError

UNIT_ID = re.compile(r"[a-z0-9-]{1,64}")  # also the unit's MQTT group name
DEVICE_ID = re.compile(r"[a-z0-9-]{3,64}")
ROLES = ("admin", "operator", "viewer", "upstream")


class RegistryError(LoaError, ValueError):
    """A registration that contradicts what the registry holds (a unit under another parent, ...)."""

    exit_code = 2


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Unit:
    id: str
    parent: str | None
    name: str
    level: str


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    unit: str | None  # None: every unit


def ensure_unit_chain(engine: Engine, chain: Sequence[tuple[str, str, str]]) -> list[Unit]:
    """Each ``(id, level, name)`` from the root down, created under the one before it if absent.

    An existing unit must already sit under the same parent at the same level: a commune is never
    moved silently by registering a box."""
    units: list[Unit] = []
    parent: str | None = None
    with engine.begin() as conn:
        for unit_id, level, name in chain:
            if not UNIT_ID.fullmatch(unit_id):
                raise RegistryError(f"unit id {unit_id!r}: expected lowercase letters, digits and '-'")
            row = conn.execute(select(db.units).where(db.units.c.id == unit_id)).first()
            if row is None:
                conn.execute(insert(db.units).values(id=unit_id, parent=parent, name=name, level=level))
                units.append(Unit(unit_id, parent, name, level))
            elif row.parent != parent or row.level != level:
                raise RegistryError(
                    f"unit {unit_id} is a {row.level} under {row.parent or 'nothing'}, "
                    f"not a {level} under {parent or 'nothing'}"
                )
            else:
                units.append(Unit(row.id, row.parent, row.name, row.level))
            parent = unit_id
    return units


def all_units(engine: Engine) -> dict[str, Unit]:
    with engine.connect() as conn:
        rows = conn.execute(select(db.units)).all()
    return {row.id: Unit(row.id, row.parent, row.name, row.level) for row in rows}


def ancestry(units: dict[str, Unit], unit_id: str) -> list[str]:
    """The unit and every unit above it, nearest first."""
    chain: list[str] = []
    current: str | None = unit_id
    while current is not None and current not in chain:
        chain.append(current)
        current = units[current].parent if current in units else None
    return chain


def subtree(units: dict[str, Unit], unit_id: str) -> set[str]:
    """The unit and every unit below it."""
    children: dict[str | None, list[str]] = {}
    for unit in units.values():
        children.setdefault(unit.parent, []).append(unit.id)
    found, stack = set(), [unit_id]
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(children.get(current, []))
    return found


def add_device(engine: Engine, device_id: str, unit: str, groups: Sequence[str], mqtt_hash: str) -> None:
    if not DEVICE_ID.fullmatch(device_id):
        raise RegistryError(f"device id {device_id!r}: expected lowercase letters, digits and '-', 3 to 64")
    at = now()
    with engine.begin() as conn:
        found = conn.execute(select(db.devices.c.removed_at).where(db.devices.c.id == device_id)).first()
        if found is not None and found.removed_at is not None:
            # its play logs and acks stay under this id for the reports: a new box takes a new id
            raise RegistryError(
                f"device {device_id} was removed from service on {found.removed_at:%Y-%m-%d}; its records "
                "are kept under that id: register the box under a new id"
            )
        if found is not None:
            raise RegistryError(f"device {device_id} is already registered")
        conn.execute(insert(db.devices).values(
            id=device_id, unit=unit, groups=list(groups), created_at=at, online=False
        ))  # fmt: skip
        conn.execute(insert(db.device_credentials).values(
            device_id=device_id, mqtt_username=device_id, mqtt_password_hash=mqtt_hash, created_at=at
        ))  # fmt: skip


def _in_service(conn: Connection, device_id: str, doing: str) -> None:
    """RegistryError unless ``device_id`` is registered and not removed; ``doing`` names the action."""
    found = conn.execute(select(db.devices.c.removed_at).where(db.devices.c.id == device_id)).first()
    if found is None:
        raise RegistryError(f"cannot {doing} device {device_id}: no such device is registered")
    if found.removed_at is not None:
        raise RegistryError(
            f"cannot {doing} device {device_id}: it was removed from service on {found.removed_at:%Y-%m-%d}"
        )


def require_in_service(engine: Engine, device_id: str, doing: str) -> None:
    with engine.connect() as conn:
        _in_service(conn, device_id, doing)


def remove_device(engine: Engine, device_id: str) -> tuple[datetime, bool]:
    """Take a box out of service: its broker account goes, its row and records stay.  When it was,
    and whether it was in service until now (False: removed before, nothing changed)."""
    at = now()
    with engine.begin() as conn:
        found = conn.execute(select(db.devices.c.removed_at).where(db.devices.c.id == device_id)).first()
        if found is None:
            raise RegistryError(f"cannot remove device {device_id}: no such device is registered")
        if found.removed_at is not None:
            return found.removed_at, False
        conn.execute(delete(db.device_credentials).where(db.device_credentials.c.device_id == device_id))
        row = db.devices.c.id == device_id
        conn.execute(update(db.devices).where(row).values(removed_at=at, online=False))
    return at, True


def removed_at(engine: Engine, device_id: str) -> datetime | None:
    """When the box was removed from service; None while in service (or never registered)."""
    with engine.connect() as conn:
        found = conn.execute(select(db.devices.c.removed_at).where(db.devices.c.id == device_id)).first()
    return None if found is None else found.removed_at


def set_device_password(engine: Engine, device_id: str, mqtt_hash: str) -> None:
    """A box's new broker password (its $7$ hash); the old one is gone.  The box shows offline until
    it connects with the new one: the broker cuts its connection, and sends no will for it."""
    with engine.begin() as conn:
        _in_service(conn, device_id, "rotate the password of")
        conn.execute(update(db.device_credentials).where(db.device_credentials.c.device_id == device_id)
                     .values(mqtt_password_hash=mqtt_hash, created_at=now()))  # fmt: skip
        conn.execute(update(db.devices).where(db.devices.c.id == device_id).values(online=False))


def device_credentials(engine: Engine) -> list[tuple[str, str]]:
    """``(username, $7$ hash)`` of every box in service, for the broker's password file."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(db.device_credentials.c.mqtt_username, db.device_credentials.c.mqtt_password_hash)
        )
        return [(row[0], row[1]) for row in rows]


def device_groups(engine: Engine) -> dict[str, list[str]]:
    """The groups of every box in service, for the broker's ACL."""
    query = select(db.devices.c.id, db.devices.c.groups).where(db.devices.c.removed_at.is_(None))
    with engine.connect() as conn:
        return {row.id: list(row.groups) for row in conn.execute(query)}


def add_user(engine: Engine, name: str, password_hash: str, role: str, unit: str | None) -> int:
    if role not in ROLES:
        raise RegistryError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    with engine.begin() as conn:
        if conn.execute(select(db.users.c.id).where(db.users.c.name == name)).first():
            raise RegistryError(f"user {name} already exists")
        if unit is not None and not conn.execute(select(db.units.c.id).where(db.units.c.id == unit)).first():
            raise RegistryError(f"unit {unit} is not registered")
        result = conn.execute(insert(db.users).values(
            name=name, password_hash=password_hash, role=role, unit=unit, created_at=now(), disabled=False
        ).returning(db.users.c.id))  # fmt: skip
        return int(result.scalar_one())


def user_with_hash(engine: Engine, name: str) -> tuple[User, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(db.users).where(db.users.c.name == name, db.users.c.disabled.is_(False))
        ).first()
    return None if row is None else (User(row.id, row.name, row.role, row.unit), row.password_hash)


def add_token(engine: Engine, user_id: int, token: str, label: str, expires_at: datetime | None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(db.api_tokens).values(
            token_sha256=token_digest(token), user_id=user_id, label=label, created_at=now(),
            expires_at=expires_at,
        ))  # fmt: skip


def user_for_token(engine: Engine, token: str, at: datetime) -> User | None:
    query = (
        select(db.users, db.api_tokens.c.expires_at)
        .join(db.api_tokens, db.api_tokens.c.user_id == db.users.c.id)
        .where(db.api_tokens.c.token_sha256 == token_digest(token), db.users.c.disabled.is_(False))
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or (row.expires_at is not None and row.expires_at <= at):
        return None
    return User(row.id, row.name, row.role, row.unit)


def record_audit(engine: Engine, user: str, action: str, target: str, detail: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(db.audit).values(at=now(), user=user, action=action, target=target, detail=detail)
        )


def audit_log(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    query = select(db.audit).order_by(db.audit.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
