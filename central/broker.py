"""The embedded Mosquitto: its generated config, password file and ACL, and its supervision.

Everything is written from the database (``storage.dir/mosquitto/``), so the files are never
edited by hand: each box has a user named by its device id (its password kept only as Mosquitto's
``$7$`` hash) and may read only its own ``cmd``, ``status`` and ``manifest`` topics and its groups'
``cmd`` and ``manifest``, and write only its own topics (never a ``cmd``).  The central server has
a user of its own, ``loa-central``, which may read and write everything under ``loa/``.

``loa-central serve`` runs Mosquitto as a child (:class:`BrokerSupervisor`) and starts it again if it
dies; ``device add``, ``remove`` and ``rotate-password`` rewrite the files and send the running
broker SIGHUP, which makes it reread the password file and the ACL: Mosquitto then disconnects each
connected client whose account is gone or whose password no longer matches, and keeps every other
connection.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from central import registry
from central.config import CentralServerConfig
from central.files import write_atomically
from central.passwords import mosquitto_hash, new_secret
from foundation.errors import ConfigError, LoaError
from protocol.topics import PREFIX

logger = logging.getLogger(__name__)

CENTRAL_USER = "loa-central"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BOX_WRITES = ("status", "state", "telemetry", "events", "playlog", "ack")
BOX_READS = ("cmd", "status", "manifest")
RESTART_DELAY = 2.0  # seconds between a broker's death and its restart
MAX_QUEUED = 200_000  # QoS 1 messages queued per client: 20 for each of 10,000 boxes (docs/BENCHMARKS.md)


class BrokerError(LoaError, OSError):
    """The embedded broker cannot be started or configured."""

    exit_code = 4


def central_password(config: CentralServerConfig) -> str:
    """The central server's own broker password: generated once, kept readable by the service alone."""
    path = config.broker_dir / "central-password"
    if not path.exists():
        write_atomically(path, (new_secret() + "\n").encode(), mode=0o600)
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom the central server connects to its broker."""

    host: str
    port: int
    username: str | None
    password: str | None


def central_endpoint(config: CentralServerConfig) -> Endpoint:
    """The embedded broker's plain listener as ``loa-central``, or the external broker as
    ``mqtt.username`` with the password in ``mqtt.password_file``."""
    if config.mqtt.embedded:
        host = "127.0.0.1" if config.mqtt.listen_host in ("0.0.0.0", "") else config.mqtt.listen_host
        return Endpoint(host, config.mqtt.listen_port, CENTRAL_USER, central_password(config))
    rest = config.mqtt.broker.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    password = None
    if config.mqtt.password_file is not None:
        try:
            password = config.mqtt.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as error:
            raise ConfigError(
                [
                    f"{config.source}: mqtt.password_file: {config.mqtt.password_file}: cannot read "
                    f"({type(error).__name__})"
                ]
            ) from None
    return Endpoint(host, int(port), config.mqtt.username, password)


def acl_text(groups_by_device: dict[str, list[str]]) -> str:
    lines = [
        f"# Written by loa-central from its database: do not edit.\nuser {CENTRAL_USER}",
        "topic readwrite loa/#",
    ]
    for device_id in sorted(groups_by_device):
        lines.append(f"\nuser {device_id}")
        lines += [f"topic read {PREFIX}/{device_id}/{kind}" for kind in BOX_READS if kind != "status"]
        lines.append(f"topic readwrite {PREFIX}/{device_id}/status")  # it repairs a stale will of its own
        lines += [f"topic write {PREFIX}/{device_id}/{kind}" for kind in BOX_WRITES if kind != "status"]
        for group in groups_by_device[device_id]:
            lines += [f"topic read {PREFIX}/group/{group}/cmd", f"topic read {PREFIX}/group/{group}/manifest"]
    return "\n".join(lines) + "\n"


def config_text(config: CentralServerConfig) -> str:
    directory = config.broker_dir
    user = pwd.getpwuid(os.geteuid()).pw_name  # never drop to 'mosquitto': the files are ours alone
    return (
        "# Written by loa-central serve: do not edit (central.yaml's mqtt section says what to change).\n"
        f"user {user}\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {directory / 'passwd'}\n"
        f"acl_file {directory / 'acl'}\n"
        "persistence true\n"  # retained manifest notices and queued commands survive a restart
        f"persistence_location {directory / 'data'}/\n"
        "autosave_interval 60\n"
        "max_inflight_messages 100\n"
        # the central server's own session must hold what every box sends at once (each box's outbox
        # after an outage): Mosquitto's default of 1000 dropped records the boxes took as delivered
        f"max_queued_messages {MAX_QUEUED}\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        f"listener {config.mqtt.listen_port} {config.mqtt.listen_host}\n" + _tls_listener(config)
    )


def _tls_listener(config: CentralServerConfig) -> str:
    """The ``mqtts://`` listener boxes use over the internet, when ``mqtt.tls_listen`` is set: the
    same accounts and ACL (``per_listener_settings false``); Mosquitto 2 takes TLS 1.2 or newer."""
    tls = config.mqtt.tls
    if tls is None:
        return ""
    return (
        f"listener {tls.port} {tls.host}\n"
        f"certfile {tls.cert_file.absolute()}\n"
        f"keyfile {tls.key_file.absolute()}\n"
    )


def write_files(config: CentralServerConfig, engine: Engine) -> None:
    """The broker's config, password file and ACL, from the database."""
    directory = config.broker_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "data").mkdir(exist_ok=True, mode=0o700)
    users = [(CENTRAL_USER, mosquitto_hash(central_password(config))), *registry.device_credentials(engine)]
    passwd = "".join(f"{name}:{hashed}\n" for name, hashed in users)
    write_atomically(directory / "passwd", passwd.encode(), mode=0o600)
    write_atomically(directory / "acl", acl_text(registry.device_groups(engine)).encode(), mode=0o600)
    write_atomically(directory / "mosquitto.conf", config_text(config).encode(), mode=0o600)


def reload(config: CentralServerConfig) -> bool:
    """SIGHUP the running embedded broker (it rereads passwords and ACL); False if none runs."""
    pid_file = config.broker_dir / "mosquitto.pid"
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
        # a pid file left by a server that died names someone else's process by now: check it first
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if not command[0].endswith(b"mosquitto") or str(config.broker_dir).encode() not in b" ".join(command):
            return False
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        return False
    logger.info("broker %d told to reload its passwords and ACL", pid)
    return True


class BrokerSupervisor:
    """Mosquitto as a child process, started again after a crash until :meth:`stop`."""

    def __init__(self, config: CentralServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)
        self.restarts = 0

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            raise BrokerError(f"{MOSQUITTO}: mosquitto is not installed (Debian package mosquitto)")
        self._spawn()
        self.thread.start()
        logger.info(
            "embedded broker started on %s:%d", self.config.mqtt.listen_host, self.config.mqtt.listen_port
        )

    def _spawn(self) -> None:
        conf = self.config.broker_dir / "mosquitto.conf"
        log = (self.config.broker_dir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        write_atomically(self.config.broker_dir / "mosquitto.pid", f"{self.process.pid}\n".encode())

    def _watch(self) -> None:
        while not self.stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self.stopping.is_set():
                return
            logger.error("embedded broker exited with %s; starting it again in %.0f s", code, RESTART_DELAY)
            if self.stopping.wait(RESTART_DELAY):
                return
            self._spawn()
            self.restarts += 1  # after: whoever sees the count sees the new process

    def stop(self) -> None:
        self.stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        (self.config.broker_dir / "mosquitto.pid").unlink(missing_ok=True)
        logger.info("embedded broker stopped")
