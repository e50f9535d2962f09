"""The demo's processes: a central server and its boxes, set up with the commands a technician types.

Every process runs in its own session, so a Ctrl-C reaches the demo alone; the demo then stops the
boxes and the server (which stops its Mosquitto) in reverse order, each with SIGTERM, as systemd
would, and kills only what does not stop in time.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
MARKER = ".loa-demo"  # a run dir the demo made, so only such a dir is ever wiped
STOP_TIMEOUT = 20.0  # seconds a process gets after SIGTERM


class DemoError(RuntimeError):
    """The demo cannot go on; the message says which step and where its log is."""


@dataclass(frozen=True)
class Box:
    id: str
    commune: str
    commune_name: str

    def directory(self, run_dir: Path) -> Path:
        return run_dir / "boxes" / self.id


PROVINCE = ("tinh-quang-tri", "Tỉnh Quảng Trị")
BOXES = (
    Box("quang-son-01", "xa-quang-son", "Xã Quảng Sơn"),
    Box("quang-son-02", "xa-quang-son", "Xã Quảng Sơn"),
    Box("hai-lang-01", "xa-hai-lang", "Xã Hải Lăng"),
)


def still_running(run_dir: Path) -> list[str]:
    """Processes that name a file under ``run_dir`` (the server, its Mosquitto and the agents all do,
    by their configs): a demo killed with SIGKILL could not stop them. Each as "pid: command line"."""
    running = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if f"{run_dir}/" in cmdline:
            running.append(f"{proc.name}: {cmdline.strip()}")
    return running


def prepare_run_dir(run_dir: Path) -> None:
    """An empty run dir: one the demo made before is wiped, anything else must be empty."""
    if run_dir.exists():
        if not (run_dir / MARKER).exists() and any(run_dir.iterdir()):
            raise DemoError(f"{run_dir} exists and is not a demo's run dir: choose another --run-dir")
        running = still_running(run_dir)
        if running:
            raise DemoError(f"a demo's processes still run in {run_dir}; stop them first (kill PID):\n"
                            + "\n".join(running))  # fmt: skip
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / MARKER).write_text("made by python -m demo; wiped by its next run\n", encoding="utf-8")


def write_secret(path: Path, text: str) -> None:
    """``text`` in ``path``, mode 0600 from its first byte, and still there after a power cut."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there, else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise DemoError("no free TCP port on 127.0.0.1")


def command_env() -> dict[str, str]:
    """The environment of every command: this checkout's code first (as ``make demo`` installs it)."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def run(*command: str, timeout: float = 120) -> str:
    """A console script of this project, to completion; its output, or a DemoError that shows it."""
    done = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True,
                          timeout=timeout, check=False, env=command_env())  # fmt: skip
    if done.returncode != 0:
        raise DemoError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


class Process:
    """A long-running console script in its own session, its output in ``log``."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen([str(BIN / command[0]), *command[1:]], stdout=out,
                                          stderr=subprocess.STDOUT, env=command_env(),
                                          start_new_session=True)  # fmt: skip
        logger.info("%s started (pid %d), its log in %s", name, self.popen.pid, log)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise DemoError(f"{self.name} exited ({self.popen.returncode}); see {self.log}")
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        raise DemoError(f"{self.name}: {what} not within {timeout:.0f} s; see {self.log}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL to its whole session if it has not stopped in time; its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop on SIGTERM: killed", self.name)
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=STOP_TIMEOUT)
        logger.info("%s stopped (%d)", self.name, self.popen.returncode)
        return self.popen.returncode


def listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@dataclass
class Central:
    """``loa-central``'s config, admin and registry under ``run_dir/central``."""

    run_dir: Path
    http_port: int
    mqtt_port: int
    admin: str = "admin"

    @property
    def config(self) -> Path:
        return self.run_dir / "central" / "central.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def password_file(self) -> Path:
        return self.run_dir / "admin-password"

    def set_up(self) -> str:
        """The config, ``init`` with a random admin password (written 0600), the boxes registered
        under their communes; the password."""
        directory = self.config.parent
        directory.mkdir(parents=True)
        self.config.write_text(
            "# The demo's central server: written by demo/stack.py (central.example.yaml has every key)\n"
            f"storage: {{dir: {directory / 'data'}}}\n"
            f"http: {{listen: 127.0.0.1:{self.http_port}}}\n"
            f"public_url: {self.url}\n"
            f"mqtt: {{broker: embedded, listen: 127.0.0.1:{self.mqtt_port}}}\n",
            encoding="utf-8",
        )
        password = secrets.token_urlsafe(12)
        write_secret(self.password_file, password + "\n")
        run("loa-central", "--config", str(self.config), "check-config")
        run("loa-central", "--config", str(self.config), "init", "--admin", self.admin,
            "--password-file", str(self.password_file))  # fmt: skip
        for box in BOXES:
            out = box.directory(self.run_dir)
            run("loa-central", "--config", str(self.config), "device", "add", box.id,
                "--province", PROVINCE[0], "--province-name", PROVINCE[1], "--commune", box.commune,
                "--commune-name", box.commune_name, "--out", str(out), "--box-dir", str(out))  # fmt: skip
        return password

    def start(self) -> Process:
        server = Process("loa-central serve", ["loa-central", "--config", str(self.config), "serve"],
                         self.config.parent / "serve.log")  # fmt: skip
        server.wait_until(lambda: listening(self.http_port), f"HTTP on port {self.http_port}")
        server.wait_until(lambda: listening(self.mqtt_port), f"the embedded broker on port {self.mqtt_port}")
        return server


def agent_config(box: Box, run_dir: Path, backend: str) -> Path:
    """The box's ``agent.yaml``: simulated hardware, an empty local schedule, and the ``central:``
    section ``device add`` wrote, appended as a technician appends it."""
    directory = box.directory(run_dir)
    output = directory / "output.wav"
    vlc_args = (
        f'["--aout=afile", "--audiofile-file={output}", "--audiofile-wav"]' if backend == "vlc" else "[]"
    )
    (directory / "schedule.yaml").write_text("items: []\n", encoding="utf-8")
    config = directory / "agent.yaml"
    config.write_text(
        f"""# {box.id}: written by demo/stack.py (simulated hardware; config.example.yaml has every key)
device: {{id: {box.id}, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: {backend}, vlc_args: {vlc_args}, volume: 80}}
gpio:
  pin_factory: mock
  amplifiers: [{{name: zone-1, pin: 17}}, {{name: zone-2, pin: 18}}]
  preroll: 1s
  postroll: 2s
  status_led: 27
schedule: {{file: schedule.yaml}}
clock: {{require_sync: false}}
control: {{socket: agent.sock}}
logging: {{level: info}}
"""
        + (directory / "central.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    run("loa-agent", "--config", str(config), "check-config", "--config-only")
    return config


def start_agent(box: Box, config: Path) -> Process:
    return Process(f"loa-agent {box.id}", ["loa-agent", "--config", str(config), "run"],
                   config.parent / "agent.log")  # fmt: skip


def wait_answering(agent: Process, config: Path) -> None:
    """Until the agent answers on its control socket (its player has warmed up by then)."""

    def answers() -> bool:
        done = subprocess.run([str(BIN / "loa"), "--config", str(config), "status", "--json"],
                              capture_output=True, check=False, timeout=10, env=command_env())  # fmt: skip
        return done.returncode == 0

    agent.wait_until(answers, "an answer to loa status", timeout=60)


def loa_status(config: Path) -> str:
    done = subprocess.run([str(BIN / "loa"), "--config", str(config), "status"], capture_output=True,
                          text=True, check=False, timeout=20, env=command_env())  # fmt: skip
    return (done.stdout + done.stderr).rstrip()
