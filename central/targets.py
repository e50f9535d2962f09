"""The boxes a bulletin or a command is for: device ids, or every box in and under the units named."""

from __future__ import annotations

from sqlalchemy import Engine, select

from central import db, registry
from foundation.errors import LoaError

TARGET_KINDS = ("devices", "communes", "districts", "units")


class BulletinError(LoaError, ValueError):
    """A bulletin or command that cannot be made as asked; ``problems`` lists every reason (HTTP 422)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def target_devices(
    engine: Engine, units: dict[str, registry.Unit], targets: dict[str, list[str]]
) -> dict[str, str]:
    """The boxes ``targets`` names (device ids, or every box in service in and under the units named),
    id -> unit; a box removed from service is never a target."""
    kinds = [kind for kind in targets if targets[kind]]
    if len(kinds) != 1 or kinds[0] not in TARGET_KINDS:
        raise BulletinError(
            [f"targets: expected exactly one of {', '.join(TARGET_KINDS)}, with a non-empty list"]
        )
    kind, names = kinds[0], targets[kinds[0]]
    query = select(db.devices.c.id, db.devices.c.unit, db.devices.c.removed_at)
    with engine.connect() as conn:
        found_rows = conn.execute(query).all()
    rows = {row.id: row.unit for row in found_rows if row.removed_at is None}
    if kind == "devices":
        removed = {row.id for row in found_rows if row.removed_at is not None}
        problems = [f"targets.devices: {what}: {', '.join(bad)}" for what, bad in (
            ("not registered", [name for name in names if name not in rows and name not in removed]),
            ("removed from service", [name for name in names if name in removed]),
        ) if bad]  # fmt: skip
        if problems:
            raise BulletinError(problems)
        return {name: rows[name] for name in names}
    unknown = [name for name in names if name not in units]
    if unknown:
        raise BulletinError([f"targets.{kind}: no such unit: {', '.join(unknown)}"])
    reach = set().union(*(registry.subtree(units, name) for name in names))
    found = {device: unit for device, unit in rows.items() if unit in reach}
    if not found:
        raise BulletinError([f"targets.{kind}: no box in service is registered in {', '.join(names)}"])
    return found
