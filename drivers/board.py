"""What the board itself says about its health: CPU temperature and throttling, storage, sound cards.

Each reader takes the file system root (``/`` on the box, a temporary tree in tests) and tolerates
absence: a board without a thermal zone, without the Raspberry Pi firmware's ``get_throttled`` or
without ALSA gives ``None`` (unknown), never an exception.  All are cheap (a small file read or a
``statvfs``), so the main loop may call them, though not on every pass (``agent.health``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "StorageSpace",
    "cpu_temperature_c",
    "sound_cards",
    "storage_space",
    "throttled",
    "throttled_words",
]

THERMAL = Path("sys/class/thermal")
# The firmware's mailbox answer, exposed by the raspberrypi-hwmon / firmware driver on Pi kernels
GET_THROTTLED = Path("sys/devices/platform/soc/soc:firmware/get_throttled")
ASOUND_CARDS = Path("proc/asound/cards")

# get_throttled bits (Raspberry Pi firmware): now (0-3) and since boot (16-19)
_THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage since boot",
    17: "frequency capped since boot",
    18: "throttled since boot",
    19: "soft temperature limit since boot",
}
THROTTLED_NOW = 0b1111


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return file.read(256).decode("ascii", "replace").strip()
    except (OSError, ValueError):
        return None


CPU_ZONES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "soc_thermal")  # the CPU's zone, in order


def cpu_temperature_c(root: Path = Path("/"), *, thermal: Path | None = None) -> float | None:
    """The CPU's temperature: the first zone typed as in CPU_ZONES (``cpu-thermal`` on a Pi), else
    the first zone that reads.  ``thermal`` is the thermal class directory (``root``'s by default)."""
    zones = sorted((thermal or root / THERMAL).glob("thermal_zone*"))
    typed = {_read(zone / "type"): zone for zone in reversed(zones)}  # the first zone of each type
    preferred = [typed[name] for name in CPU_ZONES if name in typed]
    for zone in preferred + zones:
        text = _read(zone / "temp")
        if text is not None and text.lstrip("-").isdigit() and len(text) < 9:
            return int(text) / 1000.0  # millidegrees
    return None


def throttled(root: Path = Path("/")) -> int | None:
    """The firmware's throttled bit mask (``0x50005``), or None where there is no such firmware."""
    text = _read(root / GET_THROTTLED)
    if text is None:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return value if 0 <= value < 1 << 32 else None


def throttled_words(mask: int) -> list[str]:
    return [words for bit, words in _THROTTLE_BITS.items() if mask & (1 << bit)]


@dataclass(frozen=True)
class StorageSpace:
    free_bytes: int
    total_bytes: int
    read_only: bool


def storage_space(directory: Path) -> StorageSpace | None:
    """Free space and the read-only flag of the file system holding ``directory`` (None if absent)."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None
    return StorageSpace(
        free_bytes=stats.f_bavail * stats.f_frsize,
        total_bytes=stats.f_blocks * stats.f_frsize,
        read_only=bool(stats.f_flag & os.ST_RDONLY),
    )


def sound_cards(root: Path = Path("/")) -> int | None:
    """How many sound cards ALSA lists (0: ``--- no soundcards ---`` or no ALSA), None if unreadable."""
    if not (root / "proc").is_dir():
        return None
    text = _read_all(root / ASOUND_CARDS)
    if text is None:
        return 0 if not (root / ASOUND_CARDS).parent.exists() else None
    return sum(1 for line in text.splitlines() if line[:3].strip().isdigit())


def _read_all(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")[:65536]
    except OSError:
        return None
