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
from agent.link_state import clock_source
from agent.messages import Words, words
from agent.schedule_source import CENTRAL_ORIGIN, stored_items
from agent.store import Store, iso
from agent.version import VERSION
from foundation import units
from scheduler.recurrence import Occurrence, expand

if TYPE_CHECKING:
    from agent.runtime import Agent

NEXT_COUNT = 3
FROM_STORE = "store (last good copy)"  # an origin's source when the daemon is down
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
            "clock": {
                "trusted": agent.clock_state.trusted,
                "reason": agent.clock_state.reason,
                "source": clock_source(agent.clock_state.trusted, agent.clock_state.reason),
            },
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
            "health": agent.health.snapshot(),  # [health] agent/health.py
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


def _fm_state(fm: dict[str, Any], say: Words, tz: ZoneInfo | None = None) -> str:
    """A source that cannot deliver is a FAULT in its own words; "no carrier" means a quiet band."""
    if fm.get("source_error"):
        return say("fm.fault", error=fm["source_error"])
    if fm.get("relaying"):
        state = say("fm.relaying")
    else:
        decision = str(fm.get("decision"))
        state = say("fm.not_relaying", decision=say.known(f"fm.decision.{decision}", decision))
    if fm.get("paused_until") and tz is not None:
        state = say("fm.paused", until=_local(fm["paused_until"], tz))
    source = str(fm.get("source", "ok"))
    if source != "ok":
        return say("fm.with_source", state=state, source=say.known(f"fm.source.{source}", source))
    carrier = say("fm.carrier") if fm.get("carrier") else say("fm.no_carrier")
    if fm.get("rssi_dbfs") is not None:
        carrier = say("fm.level_dbfs", carrier=carrier, rssi=fm["rssi_dbfs"], snr=fm["snr_db"])
    elif fm.get("rssi_dbuv") is not None:
        carrier = say("fm.level_dbuv", carrier=carrier, rssi=fm["rssi_dbuv"], snr=fm["snr_db"])
    return say("fm.with_carrier", state=state, carrier=carrier)


def render(status: dict[str, Any], tz: ZoneInfo, language: str = "en") -> str:
    """Plain text for a maintenance crew in ``language`` (agent/messages.py); times in the device's
    time zone.  Each line is a label and its text (:class:`Lines`)."""
    say = words(language)
    lines = Lines(say)
    lines.add("device", say("device.line", device=status.get("device"), version=status.get("version")))
    if status.get("state") == "never run":
        lines.add("agent", say("agent.never_run"))
        lines.more(say.reason(str(status.get("note"))))
        return lines.text()
    if status.get("running"):
        lines.add("agent", say("agent.running", since=_local(status.get("since"), tz)))
    elif status.get("state") == NOT_ANSWERING:
        lines.add("agent", say("agent.not_answering", note=say.reason(str(status.get("note")))))
        if status.get("store", {}) is None:  # no_store_status: nor is there a store to show
            return lines.text()
        lines.more(say("agent.from_store"))
    else:
        lines.add("agent", say("agent.not_running"))
    _clock_and_playing(lines, status, tz)
    _fm_lines(lines, status.get("fm"), tz)
    _relay_lines(lines, status, tz)
    _link_lines(lines, status.get("link"), tz)
    _central_lines(lines, status.get("central"), tz)
    _health_lines(lines, status.get("health"), tz)
    _schedule_lines(lines, status.get("schedule") or {})
    for fault in status.get("faults") or []:
        lines.add("fault", say.reason(str(fault)))
    for error in status.get("errors") or []:
        kind = str(error["kind"])
        text = say("error.line", at=_local(error["at"], tz), kind=say.known(f"kind.{kind}", kind),
                   detail=say.reason(str(error["detail"]))[:160])  # fmt: skip
        lines.add("error", text)
    return lines.text()


class Lines:
    """The status board's lines: a label (``label.<name>`` in the catalogue) and a text, the texts
    in one column whatever the language's longest label."""

    def __init__(self, say: Words) -> None:
        self.say = say
        self._lines: list[str] = []

    def add(self, label: str, text: str) -> None:
        self._lines.append(f"{self.say.label(label)} {text}")

    def more(self, text: str) -> None:
        """A line that goes on from the one above (no label)."""
        self._lines.append(f"{'':<{self.say.label_width}} {text}")

    def text(self) -> str:
        return "\n".join(self._lines)


def _clock_and_playing(lines: Lines, status: dict[str, Any], tz: ZoneInfo) -> None:
    say = lines.say
    clock = status.get("clock") or {}
    trusted = {True: "clock.trusted", False: "clock.untrusted", None: "clock.unknown"}
    lines.add("clock", say(trusted[clock.get("trusted")], reason=say.reason(str(clock.get("reason")))))
    playing = status.get("playing")
    if playing:
        since, zones = _local(playing["since"], tz), ", ".join(playing["zones"])
        level = _level(say, playing["level"])
        lines.add("playing", say("playing.item", item=playing["item"], level=level, since=since, zones=zones))
    elif status.get("running"):
        lines.add("playing", say("playing.nothing"))
    else:
        last = status.get("last_played")
        lines.add("playing", say("playing.unknown", why=_unknown_why(status, say)))
        if last:
            outcome = str(last["outcome"])
            said = say.known(f"outcome.{outcome}", outcome)
            at = _local(last["scheduled_start"], tz)
            lines.add("last", say("last.item", item=last["item_id"], outcome=said, at=at))
    for index, upcoming in enumerate(status.get("next") or []):
        text = say("next.item", at=_local(upcoming["at"], tz), item=upcoming["item"],
                   level=_level(say, upcoming["level"]))  # fmt: skip
        if index == 0:
            lines.add("next", text)
        else:
            lines.more(text)
    if not status.get("next"):
        lines.add("next", say("next.nothing"))


def _level(say: Words, level: str) -> str:
    return say.known(f"level.{level}", level)


def _fm_lines(lines: Lines, fm: dict[str, Any] | None, tz: ZoneInfo) -> None:
    if fm:
        lines.add("fm", lines.say("fm.line", mhz=fm["frequency_mhz"], state=_fm_state(fm, lines.say, tz)))


def _relay_lines(lines: Lines, status: dict[str, Any], tz: ZoneInfo) -> None:
    say = lines.say
    relays = status.get("relays")
    if relays is not None:
        lines.add("relays", _zones(relays, say))
        return
    known = status.get("relays_last_known")
    why = _unknown_why(status, say)
    if not known:
        lines.add("relays", say("relays.never_recorded", why=why))
        return
    lines.add("relays", say("relays.unknown", why=why))
    at = _local(known.get("at"), tz)
    lines.more(say("relays.last_recorded", at=at, zones=_zones(known.get("closed") or {}, say)))


def _unknown_why(status: dict[str, Any], say: Words) -> str:
    return say("why.not_answering") if status.get("state") == NOT_ANSWERING else say("why.not_running")


def _link_lines(lines: Lines, link: dict[str, Any] | None, tz: ZoneInfo) -> None:
    """The central link in a crew's words: up or since when down, last contact, what waits to go."""
    if not link or not link.get("configured"):
        return
    say = lines.say
    spool = link.get("spool") or {}
    state = "link.connected" if link.get("connected") else "link.down"
    lines.add("link", say(state, since=_local(link.get("since"), tz), broker=link.get("broker")))
    if not link.get("connected") and link.get("why_down"):
        lines.more(say("link.why", why=say.reason(str(link["why_down"]))))
    lines.more(say("link.spool", contact=_local(link.get("last_contact"), tz), plays=spool.get("play_log", 0),
                   events=spool.get("events", 0), telemetry=spool.get("telemetry", 0),
                   acks=spool.get("acks", 0)))  # fmt: skip


def _zones(states: dict[str, bool], say: Words) -> str:
    return "  ".join(f"{zone}={say('relays.on') if on else say('relays.off')}" for zone, on in states.items())


def _central_lines(lines: Lines, central: dict[str, Any] | None, tz: ZoneInfo) -> None:
    """The manifest in force and whether the audio the coming days need is in the cache."""
    if not central:
        return
    say = lines.say
    manifest, cache = central.get("manifest") or {}, central.get("cache") or {}
    version = manifest.get("version")
    what = (
        say("manifest.version", version=version, items=manifest.get("items"))
        if version
        else say("manifest.none")
    )
    checked = (say("manifest.checked", at=_local(manifest.get("checked_at"), tz)) if manifest.get("url")
               else say("manifest.no_api_url"))  # fmt: skip
    lines.add("manifest", say("manifest.line", what=what, checked=checked, poll=manifest.get("poll")))
    if manifest.get("error"):
        lines.more(say("manifest.fetch_failing", error=say.reason(str(manifest["error"]))))
    if manifest.get("refused"):
        lines.more(say.reason(str(manifest["refused"])))
    if not cache.get("planned_at"):
        lines.add("cache", say("cache.not_checked"))
        return
    missing = cache.get("missing") or 0
    ready = say(
        "cache.ready", ready=cache.get("ready"), items=cache.get("items"), horizon=cache.get("horizon")
    )
    if missing:
        ready = say(
            "cache.missing", ready=ready, missing=missing, which=", ".join(cache.get("missing_items") or [])
        )
    used = say(
        "cache.used",
        mb=f"{cache.get('bytes', 0) / 1e6:.1f}",
        quota=units.format_size(cache.get("quota") or 0),
    )
    lines.add("cache", f"{ready}; {used}")
    if cache.get("downloading"):
        lines.more(say("cache.downloading", what=cache["downloading"]))


def _schedule_lines(lines: Lines, schedule: dict[str, Any]) -> None:
    say = lines.say
    origins = schedule.get("origins") or {}
    parts = [
        say("schedule.origin", name=name, items=info.get("items"), version=info.get("version") or "-",
            source=say("schedule.from_store") if info.get("source") == FROM_STORE else info.get("source"))
        for name, info in origins.items()
    ]  # fmt: skip
    lines.add("schedule", say("schedule.line", items=schedule.get("items"),
                              origins="; ".join(parts) or say("schedule.no_origin")))  # fmt: skip
    if schedule.get("error"):
        lines.more(str(schedule["error"]))


# -- [health] the health monitor's readings and alarms (agent/health.py) -----------------------------


def health_lines(health: dict[str, Any] | None, tz: ZoneInfo, language: str = "en") -> list[str]:
    """Power, modem, board and raised alarms in a crew's words; nothing when the agent is not running."""
    lines = Lines(words(language))
    _health_lines(lines, health, tz)
    return lines.text().splitlines()


def _health_lines(lines: Lines, health: dict[str, Any] | None, tz: ZoneInfo) -> None:
    if not health:
        return
    say = lines.say
    mains = health.get("mains") or {}
    if mains.get("configured"):
        lines.add("power", say("power.mains") if mains.get("present") else say("power.backup"))
    modem = health.get("modem") or {}
    if modem.get("configured"):
        lines.add("modem", _modem_words(modem, say))
    lines.add("board", _board_words(health, say))
    for alarm in health.get("alarms") or []:
        code = str(alarm["code"])
        meaning = say.known(f"alarm.{code}", "") or say.known(
            f"alarm.{code.rpartition('.')[0]}", alarm["words"]
        )
        detail = f" ({say.reason(alarm['detail'])[:120]})" if alarm.get("detail") else ""
        lines.add(
            "alarm",
            say("alarm.line", code=code, since=_local(alarm.get("since"), tz), words=meaning, detail=detail),
        )
    for problem in health.get("unavailable") or []:
        lines.more(say("alarm.unwatched", problem=problem))


def _modem_words(modem: dict[str, Any], say: Words) -> str:
    if modem.get("answering") is None:
        return say("modem.not_asked", port=modem.get("port"))
    if not modem.get("answering"):
        return say("modem.not_answering", error=say.reason(str(modem.get("error"))))
    rssi = modem.get("rssi_dbm")
    parts = [say("modem.signal", rssi=rssi) if rssi is not None else say("modem.no_signal")]
    registration = str(modem.get("registration") or "unknown")
    if registration in ("home", "roaming"):
        parts.append(say("modem.registered", network=say(f"modem.network.{registration}")))
    else:
        parts.append(say.known(f"modem.unregistered.{registration}", registration.upper()))
    operator = " ".join(str(part) for part in (modem.get("operator"), modem.get("access")) if part)
    return ", ".join([*parts, operator] if operator else parts)


def _board_words(health: dict[str, Any], say: Words) -> str:
    cpu, storage = health.get("cpu") or {}, health.get("storage") or {}
    temp = cpu.get("temp_c")
    parts = [say("board.cpu", temp=f"{temp:.1f}") if temp is not None else say("board.cpu_unknown")]
    if cpu.get("throttled_flags"):
        parts.append("; ".join(say.reason(str(flag)) for flag in cpu["throttled_flags"]))
    if storage.get("free_bytes") is not None:
        read_only = say("board.read_only") if storage.get("read_only") else ""
        free, total = f"{storage['free_bytes'] / 1e9:.1f}", f"{storage['total_bytes'] / 1e9:.1f}"
        parts.append(say("board.storage", free=free, total=total, read_only=read_only))
    return "; ".join(parts)
