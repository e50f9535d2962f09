"""Health monitoring: the hardware around the agent, turned into alarms, events and a snapshot.

The main loop calls :meth:`HealthMonitor.poll` once per pass with what only it knows
(:class:`HealthFacts`: clock trust, the player's and the store's faults, FM).  The poll reads the
GPIO inputs (mains present, each amplifier's fault output), every few seconds the board (CPU
temperature and throttling, storage free space and read-only flag, sound cards), and the modem's
latest answer.  The modem is slow (an AT exchange may take seconds, a dead one its whole timeout),
so :class:`agent.modem_probe.ModemProbe` asks it on its own thread and the poll only reads the last
answer: the main loop, and so playback, never waits on the modem.

Each condition goes through :class:`agent.alarms.Alarms` (hysteresis, stable codes); each alarm
raised or cleared is an ``alarm.raised`` / ``alarm.cleared`` event in the store, which the link
sends on the events stream.  :meth:`HealthMonitor.snapshot` is what ``loa status`` shows under
``health``; :meth:`HealthMonitor.readings` is the same flattened into one telemetry section
(``telemetry.add_provider("health", monitor.readings)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.alarms import Alarms, Change, Rule, rule_of
from agent.config import Config
from agent.events import EventKind
from agent.modem_probe import MODEM_EVERY, ModemProbe
from agent.store import Store, iso
from drivers import board
from drivers.gpio import InputLine
from drivers.modem import Modem
from foundation.errors import HardwareError

logger = logging.getLogger(__name__)

BOARD_EVERY = 5.0  # seconds between two readings of the board (temperature, storage, sound cards)
CPU_HOT_C, CPU_COOL_C = 80.0, 75.0  # cpu.hot raises at the first, clears below the second
STORAGE_LOW, STORAGE_OK = 200_000_000, 300_000_000  # bytes free: storage.low raises below, clears above


@dataclass(frozen=True)
class HealthFacts:
    """What the main loop knows that health turns into alarms."""

    clock_trusted: bool
    clock_reason: str = ""
    player_fault: str | None = None
    store_fault: str | None = None
    fm_no_carrier: bool = False  # FM is wanted now (its hours), but there is no carrier
    cache_behind: bool = False  # [manifest/cache] audio needed soon is not downloaded: not wired yet


class HealthMonitor:
    """Alarms from the board, the GPIO inputs and the modem; one :meth:`poll` per main-loop pass."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        factory: Any = None,  # the gpiozero pin factory; None: no inputs are watched
        modem: Modem | None = None,
        root: Path = Path("/"),
        clock: Callable[[], float] = time.monotonic,
        modem_every: float = MODEM_EVERY,
        board_every: float = BOARD_EVERY,
        rules: dict[str, Rule] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.root = root
        self._clock = clock
        self._board_every = board_every
        self.alarms = Alarms(rules)
        self.unavailable: list[str] = []  # inputs that could not be opened
        self.mains: InputLine | None = None
        self.amp_faults: dict[str, InputLine] = {}
        if factory is not None:
            self._open_inputs(factory)
        self.probe = ModemProbe(modem, modem_every) if modem is not None else None
        self._board_at: float | None = None
        self._temp: float | None = None
        self._throttled: int | None = None
        self._space: board.StorageSpace | None = None
        self._cards: int | None = None
        self._since: dict[str, str | None] = {}
        self.facts = HealthFacts(clock_trusted=False)
        self._snapshot: dict[str, Any] = {}
        self._snapshot = self._build()

    def _open_inputs(self, factory: Any) -> None:
        """Each input on its own: one that cannot be opened is reported, the others are watched."""
        mains = self.config.health.mains
        wanted = [(amp.name, amp.fault_pin, amp.fault_active_high) for amp in self.config.gpio.amplifiers]
        if mains is not None:
            wanted.append(("", mains.pin, mains.active_high))
        for zone, pin, active_high in wanted:
            if pin is None:
                continue
            what = f"amplifier {zone} fault" if zone else "mains"
            try:
                line = InputLine(what, pin, active_high, factory)
            except HardwareError as exc:
                logger.error("%s; it is not watched", exc)
                self.unavailable.append(str(exc))
                continue
            if zone:
                self.amp_faults[zone] = line
            else:
                self.mains = line

    def start(self) -> None:
        watched = [f"{line.what} on pin {line.pin}" for line in self._lines()]
        logger.info("health monitor started: board, storage, clock%s", "".join(f", {w}" for w in watched))
        if self.probe is not None:
            self.probe.start()

    def close(self) -> None:
        if self.probe is not None:
            self.probe.stop()
        for line in self._lines():
            line.close()
        logger.info("health monitor stopped")

    def _lines(self) -> list[InputLine]:
        return [*([self.mains] if self.mains else []), *self.amp_faults.values()]

    @property
    def active_codes(self) -> frozenset[str]:
        return frozenset(self.alarms.active())

    # -- the main loop's pass -------------------------------------------------------------------

    def poll(self, facts: HealthFacts, now: datetime) -> list[Change]:
        """Look at everything once; record each alarm raised or cleared; the changes."""
        mono = self._clock()
        self.facts = facts
        if self._board_at is None or mono - self._board_at >= self._board_every:
            self._read_board()
            self._board_at = mono
        conditions = [*self._inputs(), *self._board(facts), *self._agent(facts), *self._modem()]
        changes = [
            change
            for code, active, detail in conditions
            if (change := self.alarms.observe(code, active, detail, mono)) is not None
        ]
        for change in changes:
            self._record(change, now)
        self._snapshot = self._build()
        return changes

    def _read_board(self) -> None:
        self._temp = board.cpu_temperature_c(self.root)
        self._throttled = board.throttled(self.root)
        self._space = board.storage_space(self.config.storage.dir)
        self._cards = board.sound_cards(self.root) if self._expects_sound_card() else None

    def _expects_sound_card(self) -> bool:
        audio = self.config.audio
        return audio.backend == "vlc" and "--aout=alsa" in audio.vlc_args

    def _inputs(self) -> list[tuple[str, bool, str]]:
        conditions = []
        if self.mains is not None:
            detail = f"mains input on pin {self.mains.pin} reads no mains: running on the backup supply"
            conditions.append(("mains.lost", not self.mains.active, detail))
        for zone, line in self.amp_faults.items():
            conditions.append(
                (f"amp.fault.{zone}", line.active, f"amplifier {zone}: fault input on pin {line.pin}")
            )
        return conditions

    def _board(self, facts: HealthFacts) -> list[tuple[str, bool, str]]:
        temp, mask, space, store_fault = self._temp, self._throttled, self._space, facts.store_fault or ""
        hot_at = CPU_COOL_C if self.alarms.raised("cpu.hot") else CPU_HOT_C
        low_below = STORAGE_OK if self.alarms.raised("storage.low") else STORAGE_LOW
        free = space.free_bytes if space is not None else None
        now_bits = (mask or 0) & board.THROTTLED_NOW
        directory = self.config.storage.dir
        return [
            ("cpu.hot", temp is not None and temp >= hot_at, f"CPU at {temp} °C"),
            ("cpu.throttled", bool(now_bits), ", ".join(board.throttled_words(now_bits))),
            (
                "storage.readonly",
                (space is not None and space.read_only) or "read-only" in store_fault,
                store_fault or f"{directory} is mounted read-only",
            ),
            (
                "storage.low",
                (free is not None and free < low_below) or "full" in store_fault,
                store_fault or f"{(free or 0) / 1e6:.0f} MB free in {directory}",
            ),
            ("audio.no_device", self._cards == 0, "ALSA lists no sound card"),
        ]

    @staticmethod
    def _agent(facts: HealthFacts) -> list[tuple[str, bool, str]]:
        return [
            ("player.hung", facts.player_fault is not None, facts.player_fault or ""),
            ("clock.untrusted", not facts.clock_trusted, facts.clock_reason),
            ("fm.no_carrier", facts.fm_no_carrier, "FM is wanted now but its carrier is absent"),
            ("cache.behind", facts.cache_behind, "audio needed soon is not downloaded yet"),
        ]

    def _modem(self) -> list[tuple[str, bool, str]]:
        if self.probe is None:
            return []
        state = self.probe.latest()
        reading = state.reading
        unregistered = state.error is None and reading is not None and not reading.registered
        registration = reading.registration if reading is not None else "unknown"
        return [
            ("modem.dead", state.error is not None, state.error or ""),
            ("modem.no_network", unregistered, f"modem registration: {registration}"),
        ]

    def _record(self, change: Change, now: datetime) -> None:
        words = rule_of(change.code).words
        if change.raised:
            self._since[change.code] = iso(now)
            logger.warning("alarm %s raised: %s (%s)", change.code, words, change.detail)
            self.store.add_event(EventKind.ALARM_RAISED, f"{change.code}: {words}: {change.detail}")
        else:
            self._since.pop(change.code, None)
            logger.info("alarm %s cleared", change.code)
            self.store.add_event(EventKind.ALARM_CLEARED, f"{change.code}: {words}")

    # -- what loa status and telemetry see -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The latest readings and raised alarms, as plain JSON values (safe from any thread)."""
        return self._snapshot

    def _build(self) -> dict[str, Any]:
        space = self._space
        return {
            "alarms": [
                {"code": code, "since": self._since.get(code), "words": rule_of(code).words, "detail": detail}
                for code, detail in self.alarms.active().items()
            ],
            "modem": self._modem_status(),
            "mains": {
                "configured": self.mains is not None,
                "present": self.mains.active if self.mains is not None else None,
            },
            "amplifier_faults": {zone: line.active for zone, line in self.amp_faults.items()},
            "cpu": {
                "temp_c": self._temp,
                "throttled": hex(self._throttled) if self._throttled is not None else None,
                "throttled_flags": board.throttled_words(self._throttled or 0),
            },
            "storage": {
                "free_bytes": space.free_bytes if space is not None else None,
                "total_bytes": space.total_bytes if space is not None else None,
                "read_only": space.read_only if space is not None else None,
            },
            "clock": {"trusted": self.facts.clock_trusted},
            "unavailable": list(self.unavailable),
        }

    def readings(self) -> dict[str, Any]:
        """The snapshot flattened into one telemetry section: names ``[a-z0-9_]``, each value null,
        true/false, a number or a short string (at most 32), from what the last poll read."""
        shown = self._snapshot
        modem, cpu, storage = shown["modem"], shown["cpu"], shown["storage"]
        faults = [zone for zone, fault in shown["amplifier_faults"].items() if fault]
        codes = ",".join(alarm["code"] for alarm in shown["alarms"])
        return {
            "alarms": codes[:256],
            "alarm_count": len(shown["alarms"]),
            "mains_present": shown["mains"]["present"],
            "amp_faults": ",".join(faults)[:256],
            "modem_answering": modem.get("answering"),
            "modem_rssi_dbm": modem["rssi_dbm"],
            "modem_registration": modem.get("registration"),
            "modem_operator": (modem.get("operator") or "")[:64] or None,
            "modem_access": modem.get("access"),
            "cpu_temp_c": cpu["temp_c"],
            "cpu_throttled": cpu["throttled"],
            "storage_free_bytes": storage["free_bytes"],
            "storage_read_only": storage["read_only"],
        }

    def _modem_status(self) -> dict[str, Any]:
        if self.probe is None:
            return {"configured": False, "rssi_dbm": None}
        state = self.probe.latest()
        reading = state.reading if state.error is None else None  # a dead modem's old signal is not news
        return {
            "configured": True,
            "port": self.probe.modem.port,
            "answering": state.error is None if state.polls else None,
            "rssi_dbm": reading.rssi_dbm if reading is not None else None,
            "csq": reading.csq if reading is not None else None,
            "registration": reading.registration if reading is not None else None,
            "operator": reading.operator if reading is not None else None,
            "access": reading.access if reading is not None else None,
            "error": state.error,
            "checked_at": iso(state.checked_at),
        }
