"""What a running process costs, read from /proc: resident memory and CPU time (user + system)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class Usage(NamedTuple):
    rss_mb: float
    rss_peak_mb: float  # VmHWM: the peak since the process started
    cpu_s: float


def usage(pid: int) -> Usage:
    """``pid``'s RSS, peak RSS and CPU seconds now; OSError once the process is gone."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in found:
            found[name] = int(value.split()[0]) / 1024
    # the command name in field 2 may hold spaces and parentheses: count the fields after its ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return Usage(found["VmRSS"], found["VmHWM"], cpu_s)


@dataclass(frozen=True)
class Watched:
    """A process watched while it idles: RSS sampled once a second, CPU over the whole wall time."""

    wall_s: float
    rss_mb: list[float]
    cpu_s: float
    last: Usage

    @property
    def cpu_percent_of_one_core(self) -> float:
        return 100 * self.cpu_s / self.wall_s


def watch(pid: int, seconds: float) -> Watched:
    """Sample ``pid`` once a second for ``seconds`` (the caller lets start-up settle first)."""
    first = usage(pid)
    wall_start = time.monotonic()
    rss: list[float] = []
    while time.monotonic() - wall_start < seconds:
        time.sleep(1.0)
        rss.append(usage(pid).rss_mb)
    last = usage(pid)
    wall = time.monotonic() - wall_start
    return Watched(wall, rss, last.cpu_s - first.cpu_s, last)
