"""``make demo-agent`` (``python -m agent.demo``): the agent alone on simulated hardware, with a
schedule that plays within a minute (``make demo`` runs the whole stack, ``demo/``).

Writes everything under ``demo-run/``: audio (spoken with espeak-ng when it is installed, tones
otherwise), a config on gpiozero's mock pins with libVLC writing what it plays to a WAV file, and
a schedule: a morning bulletin, an emergency warning that pre-empts it, and a notice whose audio
is missing (to show a ``failed`` row); between them the agent relays a simulated FM station from
an IQ recording, as it would from an RTL-SDR dongle.  It starts ``loa-agent run``, shows
``loa status`` every few seconds, stops the agent, prints ``loa playlog`` and lists the playbacks
kept in ``demo-run/played/`` (one WAV file each).
"""

from __future__ import annotations

import math
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import wave
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.wav import wav_duration

RUN_DIR = Path("demo-run")
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
BIN = Path(sys.executable).parent
DURATION = 50.0
OUTPUT = RUN_DIR / "output.wav"  # libVLC's afile output: reopened, and emptied, for each playback
PLAYED = RUN_DIR / "played"


def write_tone(path: Path, seconds: float, freqs: tuple[float, ...], rate: int = 22050) -> None:
    frames = bytearray()
    for n in range(int(seconds * rate)):
        freq = freqs[int(n / rate * 2) % len(freqs)]  # alternate every half second: a siren
        frames += struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * n / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


def speak(path: Path, text: str, fallback_seconds: float, freqs: tuple[float, ...]) -> None:
    espeak = shutil.which("espeak-ng")
    if (
        espeak
        and subprocess.run(
            [espeak, "-v", "vi", "-s", "150", "-w", str(path), text], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return
    write_tone(path, fallback_seconds, freqs)


def write_files(start: datetime) -> Path:
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    audio = RUN_DIR / "audio"
    audio.mkdir(parents=True)
    speak(
        audio / "ban-tin-sang.wav",
        "Đài truyền thanh xã Quảng Sơn xin kính chào quý vị và các bạn. "
        "Sau đây là bản tin buổi sáng. Hôm nay trời nắng nhẹ, nhiệt độ từ hai mươi hai đến ba mươi độ.",
        10,
        (440.0,),
    )
    speak(
        audio / "canh-bao-bao.wav",
        "Cảnh báo khẩn cấp. Bão số năm đang tiến vào đất liền. "
        "Đề nghị bà con không ra khơi và gia cố nhà cửa.",
        8,
        (660.0, 880.0),
    )
    at = [(start + timedelta(seconds=s)).isoformat(timespec="seconds") for s in (12, 16, 38)]
    (RUN_DIR / "schedule.yaml").write_text(
        "# Demo schedule: written by agent/demo.py\nitems:\n"
        f"  - {{id: ban-tin-sang, audio: audio/ban-tin-sang.wav, at: '{at[0]}', priority: normal}}\n"
        f"  - {{id: canh-bao-bao, audio: audio/canh-bao-bao.wav, at: '{at[1]}', priority: emergency}}\n"
        f"  - {{id: thong-bao-hop, audio: audio/khong-co.wav, at: '{at[2]}', priority: normal}}\n",
        encoding="utf-8",
    )
    write_fm_recording(RUN_DIR / "fm.cu8")
    config = RUN_DIR / "agent.yaml"
    out = OUTPUT.resolve()
    config.write_text(
        f"""# Demo config: written by agent/demo.py (simulated hardware)
device: {{id: demo-quang-son-01, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: vlc, vlc_args: ["--aout=afile", "--audiofile-file={out}", "--audiofile-wav"], volume: 80}}
gpio:
  pin_factory: mock
  amplifiers: [{{name: zone-1, pin: 17}}, {{name: zone-2, pin: 18}}]
  preroll: 2s
  postroll: 5s
  status_led: 27
schedule: {{file: schedule.yaml}}
clock: {{require_sync: false}}
control: {{socket: agent.sock}}
logging: {{level: info}}
fm:
  backend: iq_file                 # a recording stands in for the RTL-SDR dongle
  frequency: 99.1MHz
  relay_hours: ["00:00-24:00"]     # all day, so the demo relays whenever nothing is scheduled
  volume: 60
  iq_file: {{path: fm.cu8, format: cu8, sample_rate: 1024000, offset: 250kHz, loop: true}}
""",
        encoding="utf-8",
    )
    return config


def write_fm_recording(path: Path) -> None:
    """Two seconds of a simulated station on 99.1 MHz (1 kHz tone), recorded 250 kHz off-centre."""
    from fm_receiver.fake_rtlsdr import FakeRtlSdr

    dongle = FakeRtlSdr({99_100_000.0: -12.0}, noise_dbfs=-40.0, realtime=False)
    dongle.sample_rate = 1_024_000.0
    dongle.center_freq = 98_850_000.0
    path.write_bytes(dongle.read_bytes(2 * 1_024_000 * 2))  # whole tone cycles: it loops seamlessly


class PlaybackFiles:
    """Keeps every playback libVLC writes to ``output``, one file each in ``directory``.

    The afile output truncates its file when a playback starts, so that file alone ends up
    holding the last playback only.  As soon as a playback's file appears it is renamed into
    ``directory``: libVLC goes on writing through the descriptor it holds (and patches the WAV
    header there on closing), and the next playback creates a new file.  Only a playback shorter
    than one poll could be lost; the demo has none.
    """

    POLL = 0.02  # seconds

    def __init__(self, output: Path, directory: Path) -> None:
        self.output = output
        self.directory = directory
        self.files: list[Path] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="demo-playbacks", daemon=True)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (once libVLC has closed its output) and keep what is left."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._keep()

    def forget_warm_up(self) -> None:
        """Drop what libVLC wrote before the agent was ready: the player's silent warm-up at start,
        which is not a playback."""
        self._keep()
        with self._lock:
            for path in self.files:
                path.unlink(missing_ok=True)
            self.files.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.POLL):
            self._keep()

    def _keep(self) -> None:
        with self._lock:
            kept = self.directory / f"{len(self.files) + 1:02d}.wav"
            try:
                self.output.rename(kept)
            except FileNotFoundError:
                return  # nothing playing since the last one was kept
            self.files.append(kept)

    def describe(self) -> str:
        lines = [f"libVLC's output, one file per playback, in {self.directory}/:"]
        for path in self.files:
            try:
                lines.append(f"  {path.name}  {wav_duration(path):5.1f} s")
            except (OSError, wave.Error, EOFError) as exc:
                lines.append(f"  {path.name}  unreadable: {exc}")
        return "\n".join(lines if self.files else ["libVLC played nothing"])


def loa(config: Path, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "loa"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    return result.stdout + result.stderr


def wait_until_ready(config: Path, agent: subprocess.Popen[bytes]) -> None:
    """Until the agent answers on its control socket (its player has warmed up by then)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and agent.poll() is None:
        result = subprocess.run(
            [str(BIN / "loa"), "--config", str(config), "status", "--json"], capture_output=True, check=False
        )
        if result.returncode == 0:
            return
        time.sleep(0.2)


def main() -> int:
    start = datetime.now(TZ)
    config = write_files(start)
    print(f"Loa demo: schedule in {RUN_DIR}/schedule.yaml, the agent's log in {RUN_DIR}/agent.log\n")
    print((RUN_DIR / "schedule.yaml").read_text(encoding="utf-8"))
    print("--- loa-agent check-config " + "-" * 45)
    print("(the third item's audio is missing on purpose: check-config says so, and the agent logs it")
    print(" failed at air time and plays on)")
    subprocess.run([str(BIN / "loa-agent"), "--config", str(config), "check-config"], check=False)
    command = [str(BIN / "loa-agent"), "--config", str(config), "check-config", "--config-only"]
    check = subprocess.run(command, check=False)  # what the unit's ExecStartPre runs
    if check.returncode != 0:
        return check.returncode
    playbacks = PlaybackFiles(OUTPUT, PLAYED)
    playbacks.start()
    with open(RUN_DIR / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [str(BIN / "loa-agent"), "--config", str(config), "run"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_ready(config, agent)
            playbacks.forget_warm_up()
            deadline = time.monotonic() + DURATION
            while time.monotonic() < deadline and agent.poll() is None:
                time.sleep(5)
                print(f"--- loa status at {datetime.now(TZ):%H:%M:%S} " + "-" * 40)
                print(loa(config, "status"))
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
            playbacks.stop()
    print("--- loa playlog " + "-" * 56)
    print(loa(config, "playlog"))
    print(playbacks.describe())
    print(f"The agent's log is {RUN_DIR}/agent.log")
    return 0 if agent.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
