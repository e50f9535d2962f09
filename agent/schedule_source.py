"""Where the agent's schedule comes from: the local schedule file, else the last good copy stored.

A schedule file is taken whole or not at all: one bad item refuses the file, the problems are
logged and recorded with file:line, and the agent keeps the schedule it had (from memory, or from
the store after a restart).  Relative audio paths resolve against the schedule file's folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import Config
from agent.store import Store
from agent.yaml_source import load_yaml
from foundation.errors import ScheduleError
from scheduler.items import Item, parse_items

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedSchedule:
    items: list[Item]
    specs: dict[str, dict[str, Any]]


def read_schedule_file(path: Path, tz: ZoneInfo, known_zones: frozenset[str]) -> LoadedSchedule:
    """Parse and validate a schedule file; raise ScheduleError with every problem at file:line."""
    document = load_yaml(path, ScheduleError)
    problems = list(document.problems)
    items: list[Item] = []
    if not problems:
        items, findings = parse_items(document.data, tz, known_zones)
        problems.extend(document.problems_from(findings))
    if problems:
        raise ScheduleError(problems)
    raw_items = document.data.get("items") or []
    specs = {str(raw["id"]).strip(): dict(raw) for raw in raw_items}
    return LoadedSchedule(items, specs)


def stored_items(config: Config, store: Store) -> list[Item]:
    """The last good schedule kept in the store (problems, which a good file never had, are logged)."""
    items, findings = parse_items(
        {"items": list(store.schedule_specs())}, config.device.timezone, frozenset(config.all_zones)
    )
    if findings:
        logger.error("stored schedule has %d problems; ignoring them: %s", len(findings), findings[:3])
    return items


class ScheduleSource:
    """The schedule in force, and how to find each item's audio."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.file = config.schedule.file
        self.items: list[Item] = []
        self.origin = "none"
        self.loaded_at: datetime | None = None
        self.error: str | None = None

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(self.config.all_zones)

    def load(self, store: Store) -> None:
        """At start: the file if it is good, else the last good schedule kept in the store."""
        if self.file is not None and self.reload(store):
            return
        items = stored_items(self.config, store)
        if not items:
            return
        self.items = items
        self.origin = "store (last good schedule)"
        logger.info("schedule: %d items from the store", len(items))

    def reload(self, store: Store) -> bool:
        """Re-read the file; on any problem keep the current schedule and return False."""
        if self.file is None:
            return False
        try:
            loaded = read_schedule_file(self.file, self.config.device.timezone, self.zones)
        except ScheduleError as exc:
            self.error = f"schedule file refused ({len(exc.problems)} problems): {exc.problems[0]}"
            logger.error("schedule file %s refused, keeping the current schedule:\n%s", self.file, exc)
            store.add_event("error", "schedule_refused", str(exc))
            return False
        store.replace_schedule(loaded.specs, str(self.file))
        self.items = loaded.items
        self.origin = str(self.file)
        self.loaded_at = datetime.now(UTC)
        self.error = None
        logger.info("schedule: %d items from %s", len(loaded.items), self.file)
        return True

    def audio_path(self, item: Item) -> Path:
        path = Path(item.audio)
        if path.is_absolute():
            return path
        base = self.file.parent if self.file is not None else self.config.storage.dir / "audio"
        return base / path
