"""Telemetry: how the box is, sampled every ``central.telemetry_interval`` and kept in the outbox.

A sample holds the box's own readings (docs/PROTOCOL.md, "Records"): CPU temperature
(``/sys/class/thermal``), load, memory, free space under ``storage.dir``, uptime, clock trust,
the audio cache (:meth:`Telemetry.use_cache`: the central sync's cache status), whether the box
runs on battery (:meth:`Telemetry.use_power`: the health monitor's mains input) and the closed
relays.  Any other module adds a **section** through :meth:`Telemetry.add_provider`: a name and
a callable returning a mapping of readings (numbers, true/false, short strings, null), e.g.
``telemetry.add_provider("power", mains.readings)``.
Providers run on the main loop's thread once per sample: they return the latest readings they
hold and never block (a sensor read on a serial line belongs on the provider's own thread).  A
provider that raises or returns readings the protocol refuses loses its section for that sample,
with a warning in the journal (once until it recovers); the rest of the sample goes out.

Each sample is written to the store's ``telemetry`` table (sequence ids, like events), which the
link sends in order from its cursor, and which the spool policy thins through an outage
(agent/spool_policy.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.link_state import StateFacts
from agent.store import Store
from drivers import board
from foundation.findings import FindingList
from protocol.messages import SECTION, TELEMETRY_KEYS, telemetry_section_problems

logger = logging.getLogger(__name__)

Provider = Callable[[], Mapping[str, Any] | None]
THERMAL = Path("/sys/class/thermal")
PROC = Path("/proc")
MB = 1 << 20


class SystemReadings:
    """The box's own readings from the kernel; each is left out when it cannot be read."""

    def __init__(self, storage_dir: Path, *, thermal: Path = THERMAL, proc: Path = PROC) -> None:
        self.storage_dir = storage_dir
        self.thermal = thermal
        self.proc = proc

    def read(self) -> dict[str, Any]:
        readings: dict[str, Any] = {}
        for key, reader in (
            ("cpu_temp_c", self.cpu_temp_c), ("load_1m", _load_1m), ("mem_used_pct", self.mem_used_pct),
            ("disk_free_mb", self.disk_free_mb), ("uptime_s", self.uptime_s),
        ):  # fmt: skip
            try:
                value = reader()
            except (OSError, ValueError, IndexError, ZeroDivisionError):
                value = None
            if value is not None:
                readings[key] = value
        return readings

    def cpu_temp_c(self) -> float | None:
        celsius = board.cpu_temperature_c(thermal=self.thermal)  # the health monitor's reader too
        return None if celsius is None else max(-50.0, min(150.0, round(celsius, 1)))

    def mem_used_pct(self) -> float:
        fields = {}
        for line in (self.proc / "meminfo").read_text(encoding="ascii").splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) if rest.split() else 0
        total = fields["MemTotal"]
        available = fields.get("MemAvailable", fields.get("MemFree", 0))
        return max(0.0, min(100.0, round(100 * (total - available) / total, 1)))

    def disk_free_mb(self) -> int:
        return shutil.disk_usage(self.storage_dir).free // MB

    def uptime_s(self) -> int:
        return int(float((self.proc / "uptime").read_text(encoding="ascii").split()[0]))


def _load_1m() -> float:
    return round(min(os.getloadavg()[0], 1000.0), 2)


class Telemetry:
    """Samples when due (on the monotonic clock) and writes each sample to the store."""

    def __init__(
        self,
        store: Store,
        storage_dir: Path,
        interval: timedelta,
        *,
        system: SystemReadings | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.interval = interval.total_seconds()
        self.system = system or SystemReadings(storage_dir)
        self._mono = mono
        self._providers: dict[str, Provider] = {}
        self._failing: set[str] = set()  # providers whose failure was logged (once until they recover)
        self._lock = threading.Lock()  # providers may be added from any thread
        self._cache: Callable[[], Mapping[str, Any]] | None = None
        self._on_battery: Callable[[], bool | None] | None = None
        self._due = mono()  # the first sample at the first pass
        self.skipped = 0  # samples not taken while the store could not be written

    def add_provider(self, name: str, provider: Provider) -> None:
        """Add the section ``name`` to every sample from now on (ValueError for a bad or taken name)."""
        if not SECTION.fullmatch(name) or name in TELEMETRY_KEYS:
            raise ValueError(f"telemetry section {name!r}: expected [a-z][a-z0-9_]{{0,31}}, not a core key")
        with self._lock:
            if name in self._providers:
                raise ValueError(f"telemetry section {name!r} has a provider already")
            self._providers[name] = provider

    def use_cache(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Report the audio cache: ``status`` gives ``bytes`` (the cache's size) and ``missing``
        (audio needed within the horizon, not yet cached), as agent.audio_downloads publishes them;
        a key not there yet (before the first download round) is left out of the sample."""
        self._cache = status

    def use_power(self, on_battery: Callable[[], bool | None]) -> None:
        """Report ``on_battery``: True on battery, False on mains, None when not known (left out)."""
        self._on_battery = on_battery

    def tick(self, now: datetime, facts: StateFacts | None) -> int | None:
        """Take and keep a sample if one is due; its sequence number, or None."""
        if self._mono() < self._due:
            return None
        self._due = self._mono() + self.interval
        if self.store.fault is not None:
            # Kept in memory, samples would crowd out the play-log writes that wait there too.
            self.skipped += 1
            return None
        return self.store.add_telemetry(now, self.sample(facts))

    def sample(self, facts: StateFacts | None) -> dict[str, Any]:
        data = self.system.read()
        if facts is not None:
            data |= {"clock_trusted": facts.clock_trusted, "clock_source": facts.clock_source}
            data["relays_on"] = list(facts.relays_on)
        data |= self._cache_readings()
        data |= self._power_readings()
        with self._lock:
            providers = list(self._providers.items())
        for name, provider in providers:
            section = self._section(name, provider)
            if section is not None:
                data[name] = section
        return data

    def _cache_readings(self) -> dict[str, int]:
        if self._cache is None:
            return {}
        try:
            status = self._cache()
            readings = {}
            if status.get("bytes") is not None:
                readings["cache_used_mb"] = int(status["bytes"]) // MB
            if status.get("missing") is not None:
                readings["cache_missing"] = int(status["missing"])
            return readings
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("telemetry: the audio cache cannot be read: %s", exc)
            return {}

    def _power_readings(self) -> dict[str, bool]:
        if self._on_battery is None:
            return {}
        try:
            on_battery = self._on_battery()
        except Exception as exc:  # another module's bug must not stop the sample
            logger.warning("telemetry: on_battery cannot be read: %s", exc)
            return {}
        return {} if on_battery is None else {"on_battery": bool(on_battery)}

    def _section(self, name: str, provider: Provider) -> dict[str, Any] | None:
        try:
            readings = provider()
            section = dict(readings) if readings is not None else None
        except Exception as exc:  # another module's bug must not stop the sample, nor the loop
            self._failed(name, f"{type(exc).__name__}: {exc}")
            return None
        if section is None:
            return None
        findings = FindingList()
        telemetry_section_problems(section, (name,), findings)
        if findings.items:
            self._failed(name, "; ".join(map(str, findings.items)))
            return None
        if name in self._failing:
            self._failing.discard(name)
            logger.info("telemetry section %s readable again", name)
        return section

    def _failed(self, name: str, why: str) -> None:
        if name not in self._failing:
            self._failing.add(name)
            logger.warning("telemetry section %s left out: %s", name, why)


def on_battery(health_readings: Mapping[str, Any]) -> bool | None:
    """From the health monitor's readings: on battery when the mains input says no mains."""
    present = health_readings.get("mains_present")
    return None if present is None else not present
