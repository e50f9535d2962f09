"""Agent benchmarks: start accuracy through libVLC, and the idle daemon's footprint.

    .venv/bin/python -m bench.agent_bench [--starts 50] [--idle 60]

Start accuracy: the real daemon (libVLC writing to a WAV, gpiozero mock pins) plays ``--starts``
scheduled items; for each, |the libVLC "playing" event's wall time - the scheduled time| is read
from the play log (the agent stores the event's time as ``actual_start``).
Footprint: ``loa-agent run`` with libVLC loaded and nothing due, sampled for ``--idle`` seconds
from /proc: peak and mean RSS, and CPU time over wall time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import load_config
from agent.daemon import run
from agent.demo import write_fm_recording
from agent.store import Store
from drivers.wav_samples import tone, write_wav

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _config(directory: Path, out: Path) -> Path:
    path = directory / "agent.yaml"
    path.write_text(
        f"""device: {{id: bench-01, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: vlc, vlc_args: ["--aout=afile", "--audiofile-file={out}", "--audiofile-wav"]}}
gpio: {{pin_factory: mock, amplifiers: [{{name: zone-1, pin: 17}}], preroll: 500ms, postroll: 1s}}
schedule: {{file: schedule.yaml}}
clock: {{require_sync: false}}
control: {{socket: agent.sock}}
logging: {{level: warning}}
""",
        encoding="utf-8",
    )
    return path


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_accuracy(starts: int, spacing: float = 1.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_wav(directory / "beep.wav", tone(1000.0, 0.3, 48000), 48000)
        first = datetime.now(UTC) + timedelta(seconds=3)
        moments = [first + timedelta(seconds=n * spacing) for n in range(starts)]
        starts_at = [moment.astimezone(TZ).isoformat() for moment in moments]
        lines = [f"  - {{id: s{n:03d}, audio: beep.wav, at: '{when}'}}" for n, when in enumerate(starts_at)]
        (directory / "schedule.yaml").write_text("items:\n" + "\n".join(lines) + "\n", encoding="utf-8")
        config = load_config(_config(directory, directory / "out.wav"))
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(config, stop), daemon=True)
        thread.start()
        time.sleep(3 + starts * spacing + 2)
        stop.set()
        thread.join(timeout=15)
        store = Store.open_readonly(config.storage.dir)
        rows = [r for r in store.play_log() if r.actual_start]
        store.close()
    errors = [
        abs(
            (
                datetime.fromisoformat(r.actual_start or "") - datetime.fromisoformat(r.scheduled_start)
            ).total_seconds()
        )
        * 1000
        for r in rows
    ]
    return {
        "starts": len(errors),
        "scheduled": starts,
        "p50_ms": round(_percentile(errors, 50), 2),
        "p99_ms": round(_percentile(errors, 99), 2),
        "max_ms": round(max(errors), 2),
        "mean_ms": round(statistics.fmean(errors), 2),
    }


def _proc_sample(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of ``pid`` from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


FM_SECTION = """fm:
  backend: iq_file
  frequency: 99.1MHz
  relay_hours: ["00:00-24:00"]
  iq_file: {path: fm.cu8, format: cu8, sample_rate: 1024000, offset: 250kHz, loop: true}
"""


def footprint(seconds: float, relay_fm: bool = False) -> dict[str, Any]:
    """The daemon idle (nothing due), or relaying FM live from a paced 1.024 MS/s recording."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        later = (datetime.now(UTC) + timedelta(hours=6)).astimezone(TZ).isoformat()
        write_wav(directory / "beep.wav", tone(1000.0, 0.3, 48000), 48000)
        (directory / "schedule.yaml").write_text(
            f"items:\n  - {{id: later, audio: beep.wav, at: '{later}'}}\n"
        )
        config = _config(directory, directory / "out.wav")
        if relay_fm:
            write_fm_recording(directory / "fm.cu8")
            config.write_text(config.read_text() + FM_SECTION)
        agent_bin = Path(sys.executable).parent / "loa-agent"
        proc = subprocess.Popen([str(agent_bin), "--config", str(config), "run"])
        try:
            time.sleep(3)  # start-up (imports, libVLC plugin scan) is not idle time
            rss: list[float] = []
            _, cpu_start = _proc_sample(proc.pid)
            wall_start = time.monotonic()
            while time.monotonic() - wall_start < seconds:
                time.sleep(1)
                rss.append(_proc_sample(proc.pid)[0])
            _, cpu_end = _proc_sample(proc.pid)
            wall = time.monotonic() - wall_start
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    return {
        "seconds": round(wall, 1),
        "rss_peak_mb": round(max(rss), 1),
        "rss_mean_mb": round(statistics.fmean(rss), 1),
        "cpu_percent_of_one_core": round(100 * (cpu_end - cpu_start) / wall, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    print(start_accuracy(args.starts))
    print(footprint(args.idle))
    print(footprint(args.idle, relay_fm=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
