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
from agent.schedule_source import stored_items
from agent.store import Store, iso
from agent.version import VERSION
from scheduler.recurrence import expand

if TYPE_CHECKING:
    from agent.runtime import Agent, Playing

NEXT_COUNT = 3


class StatusBoard:
    """A snapshot of the agent, replaced whole by the main thread, read by others."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"running": True, "state": "starting"}
        self._since = datetime.now(UTC)

    def publish(self, agent: Agent) -> None:
        now = agent.wall()
        playing = agent.state.playing
        snapshot = {
            "running": True,
            "state": "running",
            "device": self._config.device.id,
            "version": VERSION,
            "now": iso(now),
            "since": iso(self._since),
            "clock": {"trusted": agent.state.clock.trusted, "reason": agent.state.clock.reason},
            "playing": _playing(agent, playing) if playing else None,
            "next": [_occurrence(o) for o in agent.engine.upcoming(now, NEXT_COUNT)],
            "queue": [_occurrence(o) for o in agent.engine.queue],
            "relays": agent.relays.states(),
            "player": {"backend": agent.player.name, "healthy": agent.player.healthy()},
            "schedule": {
                "items": len(agent.schedule.items),
                "origin": agent.schedule.origin,
                "error": agent.schedule.error,
            },
            "fm": agent.fm.status() if agent.fm is not None else None,
            "led": agent.led.code.name.lower() if agent.led is not None and agent.led.code else None,
            "errors": agent.store.recent_events(5, severity="error"),
        }
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)


def _playing(agent: Agent, playing: Playing) -> dict[str, Any]:
    occurrence = playing.occurrence
    return {
        **_occurrence(occurrence),
        "since": iso(agent.started_at.get(occurrence.key) or playing.asked_at),
        "zones": sorted(occurrence.item.resolved_zones(agent.all_zones)),
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
    """Status from the store alone, for when the daemon does not answer."""
    items = stored_items(config, store)
    upcoming = expand(items, config.device.timezone, now, now + timedelta(days=8))[:NEXT_COUNT]
    last = store.play_log(limit=1)
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
        "relays": {zone: False for zone in config.all_zones},
        "schedule": {"items": len(items), "origin": "store", "error": None},
        "errors": store.recent_events(5, severity="error"),
    }


def _local(stamp: str | None, tz: ZoneInfo) -> str:
    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _fm_state(fm: dict[str, Any]) -> str:
    """A source that cannot deliver is a FAULT in its own words; "no carrier" means a quiet band."""
    if fm.get("source_error"):
        return f"FAULT: {fm['source_error']}"
    state = "RELAYING" if fm.get("relaying") else f"not relaying ({fm.get('decision')})"
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
    if not status.get("running"):
        lines.append("agent    NOT RUNNING (showing what the store knows)")
    else:
        lines.append(f"agent    running since {_local(status.get('since'), tz)}")
    clock = status.get("clock") or {}
    trusted = {True: "trusted", False: "NOT TRUSTED - nothing scheduled will play", None: "unknown"}
    lines.append(f"clock    {trusted[clock.get('trusted')]} ({clock.get('reason')})")
    playing = status.get("playing")
    if playing:
        lines.append(
            f"playing  {playing['item']} [{playing['level']}] since {_local(playing['since'], tz)}"
            f" on {', '.join(playing['zones'])}"
        )
    else:
        lines.append("playing  nothing")
    for index, upcoming in enumerate(status.get("next") or []):
        label = "next" if index == 0 else ""
        lines.append(f"{label:<8} {_local(upcoming['at'], tz)}  {upcoming['item']} [{upcoming['level']}]")
    if not status.get("next"):
        lines.append("next     nothing scheduled")
    fm = status.get("fm")
    if fm:
        lines.append(f"fm       {fm['frequency_mhz']} MHz {_fm_state(fm)}")
    relays = status.get("relays") or {}
    lines.append("relays   " + "  ".join(f"{z}={'ON' if on else 'off'}" for z, on in relays.items()))
    schedule = status.get("schedule") or {}
    lines.append(f"schedule {schedule.get('items')} items from {schedule.get('origin')}")
    if schedule.get("error"):
        lines.append(f"         {schedule['error']}")
    for error in status.get("errors") or []:
        lines.append(f"error    {_local(error['at'], tz)} {error['kind']}: {error['detail'][:160]}")
    return "\n".join(lines)
