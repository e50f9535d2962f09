"""The schedule in force: the union of its origins, each with its version and its last good copy.

Origins today: the local schedule file (``local``).  The central server's signed manifest joins as
a second origin with the link.  Each origin is taken whole or not at all: one bad item refuses
the file, the problems are logged and recorded with file:line, and the origin keeps the schedule it
had (from memory, or from its last good copy in the store after a restart).  An item id that two
origins both use plays from the first origin only, and the clash is reported.

Audio paths are resolved in one place, :class:`AudioResolver`: relative paths of the local file
against the file's folder; the verified audio cache will back the central origin.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import Config
from agent.events import EventKind
from agent.store import LOCAL_ORIGIN, Store
from drivers.player import unreadable
from foundation.errors import ScheduleError
from foundation.yaml_source import YamlDocument, load_yaml, load_yaml_data, reading
from scheduler.items import Item, parse_items

logger = logging.getLogger(__name__)

COMMAND_ORIGIN = "local-command"  # items a crew plays with `loa play`
TEST_ORIGIN = "local-test"  # the tone a crew plays with `loa test tone`
TEST_PREFIX = f"{TEST_ORIGIN}-"
CENTRAL_ORIGIN = "central"  # items a signed central command plays (agent.link)
CENTRAL_COMMAND_PREFIX = "central-command-"


@dataclass(frozen=True)
class LoadedSchedule:
    items: list[Item]
    specs: dict[str, dict[str, Any]]
    version: str


def read_schedule_file(path: Path, tz: ZoneInfo, known_zones: frozenset[str]) -> LoadedSchedule:
    """Parse and validate a schedule file; raise ScheduleError with every problem at file:line.

    Nothing else escapes: whatever the file holds, the agent gets a ScheduleError and keeps the
    schedule it has.  A good file is read once, without the place of every key (a 10,000-item file
    then takes a fraction of the memory); a file with problems is read again with them, to say
    where each is.
    """
    with reading(path, ScheduleError):
        lean = load_yaml_data(path, ScheduleError)
        if lean is not None:
            items, findings = parse_items(lean.data, tz, known_zones)
            if not findings:
                return _loaded(items, lean.data, lean.digest)
    return _read_schedule(path, tz, known_zones)[0]


def _loaded(items: list[Item], data: dict[str, Any], digest: str) -> LoadedSchedule:
    specs = {str(raw["id"]).strip(): dict(raw) for raw in data.get("items") or []}
    return LoadedSchedule(items, specs, version_of(digest))


def version_of(digest: str) -> str:
    """A schedule file's version from its content's SHA-256: its start (changes whenever it does)."""
    return digest[:12]


def file_version(path: Path) -> str:
    """The version of the file at ``path`` now (what a reader of it would report), or ""."""
    try:
        return version_of(hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError:
        return ""


def _read_schedule(
    path: Path, tz: ZoneInfo, known_zones: frozenset[str]
) -> tuple[LoadedSchedule, YamlDocument]:
    with reading(path, ScheduleError):
        document = load_yaml(path, ScheduleError)
        problems = list(document.problems)
        items: list[Item] = []
        if not problems:
            items, findings = parse_items(document.data, tz, known_zones)
            problems.extend(document.problems_from(findings))
        if problems:
            raise ScheduleError(problems)
        return _loaded(items, document.data, document.digest), document


def check_audio(path: Path, tz: ZoneInfo, known_zones: frozenset[str]) -> None:
    """Like :func:`read_schedule_file`, and every audio file it names must be readable now."""
    loaded, document = _read_schedule(path, tz, known_zones)
    with reading(path, ScheduleError):
        resolver = AudioResolver(path)
        problems = []
        for index, item in enumerate(loaded.items):
            problem = unreadable(resolver.resolve(item, LOCAL_ORIGIN))
            if problem:
                key = ("items", index, "audio")
                problems.append(
                    document.problem(key, item.audio, "an audio file the agent can read", None, problem)
                )
    if problems:
        raise ScheduleError(problems)


class AudioResolver:
    """Where an item's audio is on this box: the one place paths are resolved."""

    def __init__(self, schedule_file: Path | None, storage_dir: Path | None = None) -> None:
        self._base = schedule_file.parent if schedule_file is not None else None
        self._storage = storage_dir

    def resolve(self, item: Item, origin: str) -> Path:
        path = Path(item.audio)
        if path.is_absolute():
            return path
        if origin == LOCAL_ORIGIN and self._base is not None:
            return self._base / path
        base = self._storage / "audio" if self._storage is not None else Path.cwd()
        return base / path


@dataclass
class Origin:
    """One origin's schedule in force, its version, and whether it came from the store."""

    name: str
    source: str
    items: list[Item] = field(default_factory=list)
    version: str = ""
    loaded_at: datetime | None = None
    from_store: bool = False
    error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "version": self.version or None,
            "source": "store (last good copy)" if self.from_store else self.source,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds") if self.loaded_at else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class ReloadResult:
    accepted: bool
    origin: Origin
    problems: tuple[str, ...] = ()


def stored_items(config: Config, store: Store, origin: str = LOCAL_ORIGIN) -> list[Item]:
    """The last good schedule of ``origin`` kept in the store (problems, which a good file never
    had, are logged)."""
    try:
        with reading(f"the stored {origin} schedule", ScheduleError):
            specs = {"items": list(store.schedule_specs(origin))}
            items, findings = parse_items(specs, config.device.timezone, frozenset(config.all_zones))
    except ScheduleError as exc:
        logger.error("stored %s schedule cannot be used: %s", origin, exc)
        return []
    if findings:
        logger.error(
            "stored %s schedule has %d problems; ignoring them: %s", origin, len(findings), findings[:3]
        )
    return items


class Schedule:
    """The union of the schedule's origins, and how to find each item's audio."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.file = config.schedule.file
        self.local = Origin(LOCAL_ORIGIN, str(self.file) if self.file else "none")
        self.origins: list[Origin] = [self.local]
        self.resolver = AudioResolver(self.file, config.storage.dir)
        self._origin_of: dict[str, str] = {}
        self.items: list[Item] = []

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(self.config.all_zones)

    @property
    def error(self) -> str | None:
        return next((origin.error for origin in self.origins if origin.error), None)

    def load(self, store: Store) -> None:
        """At start: each origin's source if it is good, else its last good copy in the store."""
        if self.file is None or not self.reload(store).accepted:
            self._from_store(store, self.local)
        self._merge(store)

    def reload(self, store: Store) -> ReloadResult:
        """Re-read the local file; on any problem keep the current schedule and say why."""
        origin = self.local
        if self.file is None:
            return ReloadResult(False, origin, ("no schedule.file is configured",))
        try:
            loaded = read_schedule_file(self.file, self.config.device.timezone, self.zones)
        except ScheduleError as exc:
            problems = tuple(str(problem) for problem in exc.problems)
            origin.error = f"schedule file refused ({len(problems)} problems): {problems[0]}"
            logger.error("schedule file %s refused, keeping the current schedule:\n%s", self.file, exc)
            store.add_event(EventKind.SCHEDULE_REFUSED, str(exc))
            return ReloadResult(False, origin, problems)
        store.replace_schedule(loaded.specs, str(self.file), origin=origin.name, version=loaded.version)
        origin.items, origin.version, origin.from_store = loaded.items, loaded.version, False
        origin.loaded_at, origin.error = datetime.now(UTC), None
        logger.info("schedule: %d items from %s (version %s)", len(loaded.items), self.file, loaded.version)
        store.add_event(
            EventKind.SCHEDULE_LOADED, f"{origin.name} {loaded.version}: {len(loaded.items)} items"
        )
        self._merge(store)
        return ReloadResult(True, origin)

    def add_origin(self, store: Store, name: str, source: str) -> Origin:
        """A further origin (after those already known), holding its last good copy from the store."""
        origin = next((known for known in self.origins if known.name == name), None)
        if origin is None:
            origin = Origin(name, source)
            self.origins.append(origin)
            self._from_store(store, origin)
            self._merge(store)
        return origin

    def apply_origin(
        self,
        store: Store,
        name: str,
        items: list[Item],
        specs: dict[str, dict[str, Any]],
        version: str,
        source: str,
    ) -> Origin:
        """Put ``items`` in force as origin ``name``'s whole schedule: its last good copy in the store
        is replaced in one transaction first, so a crash leaves the old or the new copy, never a mix."""
        origin = self.add_origin(store, name, source)
        store.replace_schedule(specs, source, origin=name, version=version)
        origin.items, origin.version, origin.from_store = list(items), version, False
        origin.loaded_at, origin.error = datetime.now(UTC), None
        logger.info("schedule: %d %s items from %s (version %s)", len(items), name, source, version)
        store.add_event(EventKind.SCHEDULE_LOADED, f"{name} {version}: {len(items)} items")
        self._merge(store)
        return origin

    def _from_store(self, store: Store, origin: Origin) -> None:
        items = stored_items(self.config, store, origin.name)
        if not items:
            return
        meta = store.schedule_origin(origin.name)
        origin.items, origin.from_store = items, True
        origin.version = str(meta.get("version") or "")
        logger.info("schedule: %d %s items from the store (last good copy)", len(items), origin.name)

    def _merge(self, store: Store) -> None:
        merged: dict[str, Item] = {}
        self._origin_of = {}
        for origin in self.origins:
            for item in origin.items:
                if item.id in merged:
                    detail = (
                        f"item id {item.id!r} of {origin.name} is already used by {self._origin_of[item.id]}"
                    )
                    logger.error("%s: the %s item is ignored", detail, origin.name)
                    store.add_event(EventKind.SCHEDULE_REFUSED, detail)
                    continue
                merged[item.id] = item
                self._origin_of[item.id] = origin.name
        self.items = list(merged.values())

    def origin_of(self, item: Item) -> str:
        default = CENTRAL_ORIGIN if item.id.startswith(CENTRAL_COMMAND_PREFIX) else COMMAND_ORIGIN
        if item.id.startswith(TEST_PREFIX):
            default = TEST_ORIGIN
        return self._origin_of.get(item.id, default)

    def audio_path(self, item: Item) -> Path:
        return self.resolver.resolve(item, self.origin_of(item))

    def status(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "error": self.error,
            "origins": {origin.name: origin.status() for origin in self.origins},
        }
