"""Who may act on what: roles scoped to a unit and everything below it.

``admin`` reaches every box; ``operator`` schedules and commands the boxes of its unit's subtree (a
commune operator its commune, a province operator its province); ``viewer`` and ``upstream`` only
read, within their unit (an upstream system without a unit reads everything).  A refusal is a
:class:`Forbidden` whose message says plainly why, which the API answers as 403.
"""

from __future__ import annotations

from collections.abc import Iterable

from central.registry import Unit, User, subtree
from foundation.errors import LoaError

WRITERS = ("admin", "operator")


class Forbidden(LoaError, PermissionError):
    """The user may not do this; the message says why in plain words."""


class Scope:
    def __init__(self, user: User, units: dict[str, Unit]) -> None:
        self.user = user
        self.units = units
        self.reach: set[str] | None = None if user.unit is None else subtree(units, user.unit)

    def sees_unit(self, unit: str) -> bool:
        return self.reach is None or unit in self.reach

    def require_writer(self, what: str) -> None:
        if self.user.role not in WRITERS:
            raise Forbidden(f"{self.user.name} is a {self.user.role}: only an operator or admin may {what}")

    def require_units(self, device_units: dict[str, str], what: str) -> None:
        """Every device (id -> its unit) must be within reach, else Forbidden naming the first few."""
        outside = sorted(device for device, unit in device_units.items() if not self.sees_unit(unit))
        if outside:
            where = self.units[self.user.unit].name if self.user.unit in self.units else self.user.unit
            shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
            raise Forbidden(f"{self.user.name} may {what} only the boxes of {where}; not {shown}")

    def visible(self, device_units: Iterable[tuple[str, str]]) -> list[str]:
        return [device for device, unit in device_units if self.sees_unit(unit)]
