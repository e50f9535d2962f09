"""Agent benchmarks: start accuracy through libVLC, and the idle daemon's footprint.

    .venv/bin/python -m bench.agent_bench [--starts 120] [--idle 60]

libVLC latency: python-vlc alone, with the agent bench's arguments, plays the bench's beep
``--starts`` times; for each, the time from ``play()`` to the "playing" event (MediaPlayerPlaying,
and the agent's "playing": MediaPlayerPlaying with an audio stream).  The media is set on the
player beforehand, as the agent's ``prepare`` does, so this is the latency the agent's start lead
has to cover.
Start accuracy: the real daemon (libVLC writing to a WAV, gpiozero mock pins) plays ``--starts``
scheduled items one second apart; for each, the libVLC "playing" event's wall time - the
scheduled time, read from the play log (the agent stores the event's time as ``actual_start``,
to the millisecond).
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
from agent.runtime import Agent
from agent.store import Store
from bench.proc_usage import watch
from drivers.vlc_player import BASE_ARGS, load_libvlc
from drivers.wav_samples import tone, write_wav

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _vlc_args(out: Path) -> list[str]:
    return ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]


def _beep(directory: Path) -> Path:
    path = directory / "beep.wav"
    write_wav(path, tone(1000.0, 0.3, 48000), 48000)
    return path


def _config(directory: Path, out: Path) -> Path:
    path = directory / "agent.yaml"
    args = ", ".join(f'"{arg}"' for arg in _vlc_args(out))
    path.write_text(
        f"""device: {{id: bench-01, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: vlc, vlc_args: [{args}]}}
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


def _spread(values: list[float], signed: bool = False) -> dict[str, float]:
    """Percentiles (and for signed values, the low end) of ``values``, in ms to 0.01."""
    spread = {f"p{q}": _percentile(values, q) for q in (50, 90, 99)}
    if signed:
        spread = {"p1": _percentile(values, 1), **spread, "mean": statistics.fmean(values)}
    spread["max"] = max(values)
    return {name: round(value, 2) for name, value in spread.items()}


def libvlc_latency(plays: int) -> dict[str, Any]:
    """play()-to-playing latency of libVLC alone, through python-vlc, with the agent bench's args."""
    vlc = load_libvlc()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        beep = _beep(directory)
        instance = vlc.Instance([*BASE_ARGS, *_vlc_args(directory / "out.wav")])
        player = instance.media_player_new()
        seen: dict[str, float] = {}
        sounding, over = threading.Event(), threading.Event()

        def on_event(event: Any, kind: str) -> None:  # libVLC's thread: record only
            now = time.monotonic()
            if kind != "es" or event.u.meta_type == 0:  # an audio stream
                seen.setdefault(kind, now)
            if "es" in seen and "playing" in seen:
                sounding.set()
            if kind == "end":
                over.set()

        events = player.event_manager()
        for kind, event_type in (
            ("es", vlc.EventType.MediaPlayerESAdded),
            ("playing", vlc.EventType.MediaPlayerPlaying),
            ("end", vlc.EventType.MediaPlayerEndReached),
        ):
            events.event_attach(event_type, on_event, kind)
        playing_ms: list[float] = []
        sounding_ms: list[float] = []
        for n in range(plays + 2):  # the first two warm libVLC up, as the agent's player does
            seen.clear()
            sounding.clear()
            over.clear()
            media = instance.media_new_path(str(beep))
            player.set_media(media)  # prepared, as the agent's prepare() does when idle
            time.sleep(0.05)
            asked = time.monotonic()
            player.play()
            if not (sounding.wait(5.0) and over.wait(5.0)):
                raise RuntimeError("libVLC did not play the bench's beep within 5 s")
            if n >= 2:
                playing_ms.append(1000 * (seen["playing"] - asked))
                sounding_ms.append(1000 * (max(seen["playing"], seen["es"]) - asked))
            media.release()
        player.stop()
        player.release()
        instance.release()
    return {"plays": plays, "playing": _spread(playing_ms), "playing_with_audio": _spread(sounding_ms)}


def start_accuracy(starts: int, spacing: float = 1.0) -> dict[str, Any]:
    """The daemon's start error over ``starts`` scheduled beeps, from its play log."""
    agents: list[Agent] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _beep(directory)
        # whole milliseconds, the play log's resolution, so that only actual_start is rounded
        first = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        moments = [first + timedelta(seconds=n * spacing) for n in range(starts)]
        starts_at = [moment.astimezone(TZ).isoformat(timespec="milliseconds") for moment in moments]
        lines = [f"  - {{id: s{n:03d}, audio: beep.wav, at: '{when}'}}" for n, when in enumerate(starts_at)]
        (directory / "schedule.yaml").write_text("items:\n" + "\n".join(lines) + "\n", encoding="utf-8")
        config = load_config(_config(directory, directory / "out.wav"))
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(config, stop, agents.append), daemon=True)
        load_before = os.getloadavg()[0]
        thread.start()
        time.sleep(max(0.0, (moments[-1] - datetime.now(UTC)).total_seconds()) + 2)
        warm_up = agents[0].player.start_latency if agents else None
        lead = agents[0].start_timer.lead() if agents else timedelta(0)
        stop.set()
        thread.join(timeout=15)
        store = Store.open_readonly(config.storage.dir)
        rows = [r for r in store.play_log() if r.actual_start]
        store.close()
    errors = [
        1000
        * (
            datetime.fromisoformat(r.actual_start or "") - datetime.fromisoformat(r.scheduled_start)
        ).total_seconds()
        for r in rows
    ]
    return {
        "starts": len(errors),
        "scheduled": starts,
        "spacing_s": spacing,
        "warm_up_latency_ms": None if warm_up is None else round(1000 * warm_up, 2),
        "final_lead_ms": round(lead.total_seconds() * 1000, 2),
        "load_average": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "signed": _spread(errors, signed=True),
        "absolute": _spread([abs(error) for error in errors]),
    }


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
        _beep(directory)
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
            watched = watch(proc.pid, seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    return {
        "seconds": round(watched.wall_s, 1),
        "rss_peak_mb": round(max(watched.rss_mb), 1),
        "rss_mean_mb": round(statistics.fmean(watched.rss_mb), 1),
        "cpu_percent_of_one_core": round(watched.cpu_percent_of_one_core, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=120)
    parser.add_argument("--idle", type=float, default=60.0, help="0 skips the footprint")
    args = parser.parse_args()
    print(libvlc_latency(args.starts))
    print(start_accuracy(args.starts))
    if args.idle > 0:
        print(footprint(args.idle))
        print(footprint(args.idle, relay_fm=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
