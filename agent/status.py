"""What ``loa status`` shows: built by the main thread, read by the control socket thread.

The same dictionary shape comes from the running daemon (:class:`StatusBoard`) and, when the
daemon is not running, from the store (:func:`offline_status`), so ``loa status --json`` has one
contract.  :func:`render` turns it into the plain text a maintenance crew reads at the pole.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.config import Config
from agent.schedule_source import CENTRAL_ORIGIN, stored_items
from agent.store import Store, iso
from agent.version import VERSION
from foundation import units
from scheduler.recurrence import Occurrence, expand

if TYPE_CHECKING:
    from agent.runtime import Agent

NEXT_COUNT = 3
NOT_ANSWERING = "not answering"  # the agent holds its control socket but did not answer in time


class StatusBoard:
    """A snapshot of the agent, replaced whole by the main thread, read by others.

    The main loop publishes on every pass (at least once a second), so what does not change between
    passes is kept: the next occurrences (the engine keeps them until the frontier passes the first)
    and their rendering, and the recent errors, read again only when the store's events changed.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"running": True, "state": "starting"}
        self._since = datetime.now(UTC)
        self._next: tuple[list[Occurrence], list[dict[str, Any]]] = ([], [])
        self._errors: tuple[int, list[dict[str, Any]]] | None = None

    def publish(self, agent: Agent) -> None:
        now = agent.wall()
        playing = agent.playing
        snapshot = {
            "running": True,
            "state": "running",
            "device": self._config.device.id,
            "version": VERSION,
            "now": iso(now),
            "since": iso(self._since),
            "clock": {"trusted": agent.clock_state.trusted, "reason": agent.clock_state.reason},
            "playing": _playing(agent, playing) if playing else None,
            "next": self._upcoming(agent, now),
            "queue": [_occurrence(o) for o in agent.engine.queue],
            "relays": agent.relays.states(),
            "player": {"backend": agent.player.name, "healthy": agent.player.healthy()},
            "schedule": agent.schedule.status(),
            "fm": _fm(agent, now),
            "storage": {
                "fault": agent.store.fault,
                "kept_in_memory": agent.store.buffer.pending,
                "dropped": agent.store.buffer.dropped,
            },
            "led": agent.led.code.value if agent.led is not None and agent.led.code else None,
            "faults": list(agent.plan.faults) if agent.plan is not None else [],
            "errors": self._recent_errors(agent.store),
            "link": agent.link.status() if agent.link is not None else {"configured": False},
            "central": agent.central.status() if agent.central is not None else None,
        }
        with self._lock:
            self._snapshot = snapshot

    def _upcoming(self, agent: Agent, now: datetime) -> list[dict[str, Any]]:
        upcoming = agent.engine.upcoming(now, NEXT_COUNT)
        if upcoming != self._next[0]:
            self._next = (upcoming, [_occurrence(o) for o in upcoming])
        return self._next[1]

    def _recent_errors(self, store: Store) -> list[dict[str, Any]]:
        if self._errors is None or self._errors[0] != store.events_version:
            self._errors = (store.events_version, store.recent_events(5, severity="error"))
        return self._errors[1]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)


def _playing(agent: Agent, occurrence: Occurrence) -> dict[str, Any]:
    return {
        **_occurrence(occurrence),
        "since": iso(agent.play_log.since(occurrence)),
        "zones": sorted(occurrence.item.resolved_zones(agent.all_zones)),
        "origin": agent.schedule.origin_of(occurrence.item),
    }


def _occurrence(occurrence: Any) -> dict[str, Any]:
    item = occurrence.item
    return {
        "item": item.id,
        "audio": item.audio,
        "level": item.level.name.lower(),
        "at": iso(occurrence.start),
    }


def offline_status(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    """Status from the store alone, for when the daemon does not answer: what the store knows, and
    None (with a word why) for what only the running agent can know."""
    items = stored_items(config, store)
    upcoming = expand(items, config.device.timezone, now, now + timedelta(days=8))[:NEXT_COUNT]
    last = store.play_log(limit=1)
    relays = store.get_state("relays")
    origin = store.schedule_origin()
    origins = {"local": _stored_origin(origin, len(items))}
    central = store.schedule_origin(CENTRAL_ORIGIN)
    if central:  # the last good manifest (its items are not among "next": the local file's only)
        origins[CENTRAL_ORIGIN] = _stored_origin(central, central.get("items"))
    return {
        "running": False,
        "state": "stopped",
        "device": config.device.id,
        "version": VERSION,
        "now": iso(now),
        "clock": {"trusted": None, "reason": "unknown: the agent is not running"},
        "playing": None,
        "last_played": last[0].__dict__ if last else None,
        "next": [_occurrence(o) for o in upcoming],
        "relays": None,  # only the running agent knows; the last state it recorded follows
        "relays_last_known": relays if isinstance(relays, dict) else None,
        "schedule": {"items": len(items), "error": None, "origins": origins},
        "errors": store.recent_events(5, severity="error"),
    }  # fmt: skip


def _stored_origin(meta: dict[str, Any], items: object) -> dict[str, Any]:
    return {"items": items, "version": meta.get("version"), "source": "store (last good copy)",
            "loaded_at": meta.get("loaded_at"), "error": None}  # fmt: skip


def no_store_status(config: Config, reason: str) -> dict[str, Any]:
    """Status when neither the daemon nor its store answers (the agent never ran with this config)."""
    return {"running": False, "state": "never run", "device": config.device.id, "version": VERSION,
            "store": None, "note": reason}  # fmt: skip


def not_answering_status(stored: dict[str, Any], note: str) -> dict[str, Any]:
    """What the store knows (``offline_status`` or ``no_store_status``), labelled for an agent that
    holds its control socket but did not answer in time: not stopped, yet its live state unknown."""
    status = {**stored, "running": None, "state": NOT_ANSWERING, "note": note}
    if "clock" in status:
        status["clock"] = {"trusted": None, "reason": "unknown: the agent did not answer"}
    return status


def _local(stamp: str | None, tz: ZoneInfo) -> str:
    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _fm(agent: Agent, now: datetime) -> dict[str, Any] | None:
    if agent.fm is None:
        return None
    paused = agent.fm_paused_until if agent.fm_paused_until and now < agent.fm_paused_until else None
    return {**agent.fm.status(), "paused_until": iso(paused)}


def _fm_state(fm: dict[str, Any], tz: ZoneInfo | None = None) -> str:
    """A source that cannot deliver is a FAULT in its own words; "no carrier" means a quiet band."""
    if fm.get("source_error"):
        return f"FAULT: {fm['source_error']}"
    state = "RELAYING" if fm.get("relaying") else f"not relaying ({fm.get('decision')})"
    if fm.get("paused_until") and tz is not None:
        state = f"PAUSED by loa stop until {_local(fm['paused_until'], tz)}"
    source = fm.get("source", "ok")
    if source != "ok":
        return f"{state}: source {source}"
    carrier = "carrier present" if fm.get("carrier") else "no carrier"
    if fm.get("rssi_dbfs") is not None:
        carrier += f", level {fm['rssi_dbfs']} dBFS, SNR {fm['snr_db']} dB"
    elif fm.get("rssi_dbuv") is not None:
        carrier += f", level {fm['rssi_dbuv']} dBµV, SNR {fm['snr_db']} dB"
    return f"{state}: {carrier}"


def render(status: dict[str, Any], tz: ZoneInfo) -> str:
    """Plain text for a maintenance crew; times in the device's time zone."""
    lines = [f"device   {status.get('device')}  (loa {status.get('version')})"]
    if status.get("state") == "never run":
        lines.append("agent    NOT RUNNING, and it has left no records yet")
        lines.append(f"         {status.get('note')}")
        return "\n".join(lines)
    running = bool(status.get("running"))
    if running:
        lines.append(f"agent    running since {_local(status.get('since'), tz)}")
    elif status.get("state") == NOT_ANSWERING:
        lines.append(f"agent    RUNNING but NOT ANSWERING: {status.get('note')}")
        if status.get("store", {}) is None:  # no_store_status: nor is there a store to show
            return "\n".join(lines)
        lines.append("         (showing what the store knows)")
    else:
        lines.append("agent    NOT RUNNING (showing what the store knows)")
    lines += _clock_and_playing(status, tz)
    lines += _fm_lines(status.get("fm"), tz)
    lines += _relay_lines(status, tz)
    lines += _link_lines(status.get("link"), tz)
    lines += _central_lines(status.get("central"), tz)
    lines += _schedule_lines(status.get("schedule") or {})
    for fault in status.get("faults") or []:
        lines.append(f"FAULT    {fault}")
    for error in status.get("errors") or []:
        lines.append(f"error    {_local(error['at'], tz)} {error['kind']}: {error['detail'][:160]}")
    return "\n".join(lines)


def _clock_and_playing(status: dict[str, Any], tz: ZoneInfo) -> list[str]:
    clock = status.get("clock") or {}
    trusted = {True: "trusted", False: "NOT TRUSTED - nothing scheduled will start", None: "unknown"}
    lines = [f"clock    {trusted[clock.get('trusted')]} ({clock.get('reason')})"]
    playing = status.get("playing")
    if playing:
        lines.append(
            f"playing  {playing['item']} [{playing['level']}] since {_local(playing['since'], tz)}"
            f" on {', '.join(playing['zones'])}"
        )
    elif status.get("running"):
        lines.append("playing  nothing")
    else:
        last = status.get("last_played")
        lines.append(f"playing  unknown ({_unknown_why(status)})")
        if last:
            lines.append(
                f"last     {last['item_id']} {last['outcome']} at {_local(last['scheduled_start'], tz)}"
            )
    for index, upcoming in enumerate(status.get("next") or []):
        label = "next" if index == 0 else ""
        lines.append(f"{label:<8} {_local(upcoming['at'], tz)}  {upcoming['item']} [{upcoming['level']}]")
    if not status.get("next"):
        lines.append("next     nothing scheduled")
    return lines


def _fm_lines(fm: dict[str, Any] | None, tz: ZoneInfo) -> list[str]:
    if not fm:
        return []
    return [f"fm       {fm['frequency_mhz']} MHz {_fm_state(fm, tz)}"]


def _relay_lines(status: dict[str, Any], tz: ZoneInfo) -> list[str]:
    relays = status.get("relays")
    if relays is not None:
        return ["relays   " + _zones(relays)]
    known = status.get("relays_last_known")
    if not known:
        return [f"relays   unknown now ({_unknown_why(status)}); never recorded"]
    return [
        f"relays   unknown now ({_unknown_why(status)})",
        f"         last recorded {_local(known.get('at'), tz)}: {_zones(known.get('closed') or {})}",
    ]


def _unknown_why(status: dict[str, Any]) -> str:
    return "agent not answering" if status.get("state") == NOT_ANSWERING else "agent not running"


def _link_lines(link: dict[str, Any] | None, tz: ZoneInfo) -> list[str]:
    """The central link in a crew's words: up or since when down, last contact, what waits to go."""
    if not link or not link.get("configured"):
        return []
    spool = link.get("spool") or {}
    waiting = ", ".join(f"{spool.get(key, 0)} {words}" for key, words in _SPOOLED)
    state = "connected" if link.get("connected") else "DOWN"
    lines = [f"link     {state} since {_local(link.get('since'), tz)} ({link.get('broker')})"]
    lines.append(f"         last contact {_local(link.get('last_contact'), tz)}; waiting to send: {waiting}")
    return lines


def _central_lines(central: dict[str, Any] | None, tz: ZoneInfo) -> list[str]:
    """The manifest in force and whether the audio the coming days need is in the cache."""
    if not central:
        return []
    manifest, cache = central.get("manifest") or {}, central.get("cache") or {}
    version = manifest.get("version")
    what = f"version {version}, {manifest.get('items')} items" if version else "none in force"
    checked = f"checked {_local(manifest.get('checked_at'), tz)}" if manifest.get("url") else "no api_url"
    lines = [f"manifest {what} ({checked}; every {manifest.get('poll')})"]
    if manifest.get("error"):
        lines.append(f"         FETCH FAILING: {manifest['error']}")
    if manifest.get("refused"):
        lines.append(f"         {manifest['refused']}")
    if not cache.get("planned_at"):
        return [*lines, "cache    not checked yet"]
    missing = cache.get("missing") or 0
    ready = f"{cache.get('ready')} of {cache.get('items')} items in the next {cache.get('horizon')} ready"
    if missing:
        ready += f", {missing} MISSING ({', '.join(cache.get('missing_items') or [])})"
    used = f"{cache.get('bytes', 0) / 1e6:.1f} MB of {units.format_size(cache.get('quota') or 0)} used"
    lines.append(f"cache    {ready}; {used}")
    if cache.get("downloading"):
        lines.append(f"         downloading {cache['downloading']}")
    return lines


_SPOOLED = (("play_log", "play-log records"), ("events", "events"), ("acks", "acks"))


def _zones(states: dict[str, bool]) -> str:
    return "  ".join(f"{zone}={'ON' if on else 'off'}" for zone, on in states.items())


def _schedule_lines(schedule: dict[str, Any]) -> list[str]:
    origins = schedule.get("origins") or {}
    parts = [
        f"{name} {info.get('items')} (version {info.get('version') or '-'}, from {info.get('source')})"
        for name, info in origins.items()
    ]
    lines = [f"schedule {schedule.get('items')} items: " + ("; ".join(parts) or "no origin")]
    if schedule.get("error"):
        lines.append(f"         {schedule['error']}")
    return lines
