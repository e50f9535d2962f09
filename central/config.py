"""The central server's configuration file (``central.example.yaml`` documents every key).

Read with the same line-aware reader as the agent's (foundation.yaml_source, foundation.config_reader),
so every problem is reported at once as ``FILE:LINE: key.path: value ...: expected ...``, unknown and
duplicate keys included.  Defaults make one machine work with nothing else: a SQLite database and
the audio under ``storage.dir``, and an embedded Mosquitto broker started by ``loa-central serve``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from foundation import config_reader as read
from foundation.yaml_source import YamlDocument

LogLevel = Literal["debug", "info", "warning", "error"]
EMBEDDED = "embedded"

_HOST_PORT = read.text_matching(
    "host:port such as 0.0.0.0:8080 (a host name or IPv4 address, a port from 1 to 65535)",
    r"[A-Za-z0-9.-]+:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})",
)
_HTTP_URL = read.text_matching(
    "an http:// or https:// URL such as https://loa.example.vn", r"https?://[^\s/]+\S*"
)
_BROKER = read.text_matching(
    "embedded, or a broker URL mqtt://host:port or mqtts://host:port",
    r"embedded|mqtts?://[A-Za-z0-9.-]+:[0-9]{1,5}",
)
_BOX_MQTT_URL = read.text_matching(
    "mqtt://host:port or mqtts://host:port (TLS), as a box reaches the broker",
    r"mqtts?://[A-Za-z0-9.-]+:[0-9]{1,5}",
)
_DATABASE_URL = read.text_matching(
    "a database URL: sqlite:////abs/path.db or postgresql+psycopg://user@host/db",
    r"(sqlite|postgresql(\+psycopg2?)?)://\S*",
)
_USER = read.text_matching("a user name", r"\S{1,128}")
_MEGABYTES = read.whole(1, 2048, "a size in megabytes from 1 to 2048")


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class MqttConfig:
    broker: str = EMBEDDED  # "embedded" or mqtt(s)://host:port
    listen_host: str = "0.0.0.0"
    listen_port: int = 1883
    box_url: str | None = None  # what a box connects to; derived from public_url when absent
    username: str | None = None  # the central server's own user on an external broker
    password_file: Path | None = None
    tls: TlsListener | None = None  # the embedded broker's TLS listener, for boxes
    box_ca_file: Path | None = None  # the CA certificate boxes trust the broker by (copied by device add)

    @property
    def embedded(self) -> bool:
        return self.broker == EMBEDDED


MIN_PLAYLOG_DAYS = 400  # the yearly broadcast report covers a calendar year and is filed in December
MIN_AUDIT_DAYS = 400  # who did what must outlast at least the yearly report and a year's inspection
MAX_DAYS = 36500


@dataclass(frozen=True)
class RetentionConfig:
    """How long ingested records are kept, in days (central.retention prunes what is older)."""

    telemetry_days: int = 30
    events_days: int = 400
    playlog_days: int = 400
    commands_days: int = 400  # commands, their targets and acks, by when the command was sent
    audit_days: int = 1825  # the audit log (who did what), five years: a public body's audit trail


@dataclass(frozen=True)
class TlsListener:
    """The embedded broker's ``mqtts://`` listener: its certificate chain and key (PEM files)."""

    host: str
    port: int
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class CentralServerConfig:
    source: Path
    storage_dir: Path
    http: HttpConfig
    public_url: str  # how boxes and browsers reach the HTTP API, without /api
    mqtt: MqttConfig
    database_url: str
    audio_max_bytes: int
    offline_after: timedelta
    command_lifetime: timedelta
    tts_voice: str
    log_level: LogLevel
    box_timezone: ZoneInfo  # the boxes' local time (a naive dtstart, dates)
    retention: RetentionConfig = RetentionConfig()

    @property
    def api_url(self) -> str:
        """What a box's ``central.api_url`` is: the manifest is at ``<api_url>/v1/devices/<id>/manifest``."""
        return self.public_url.rstrip("/") + "/api"

    @property
    def box_mqtt_url(self) -> str:
        """The broker as a box reaches it: ``mqtt.box_url``, else public_url's host and the broker's port."""
        if self.mqtt.box_url:
            return self.mqtt.box_url
        if not self.mqtt.embedded:
            return self.mqtt.broker
        host = urlsplit(self.public_url).hostname or "localhost"
        if self.mqtt.tls is not None:  # boxes come over the internet: only ever by TLS
            return f"mqtts://{host}:{self.mqtt.tls.port}"
        return f"mqtt://{host}:{self.mqtt.listen_port}"

    @property
    def signing_key_file(self) -> Path:
        return self.storage_dir / "signing-key.pem"

    @property
    def public_key_file(self) -> Path:
        return self.storage_dir / "signing-key.pub.pem"

    @property
    def audio_dir(self) -> Path:
        return self.storage_dir / "audio"

    @property
    def broker_dir(self) -> Path:
        return self.storage_dir / "mosquitto"


def load_central_config(path: Path) -> CentralServerConfig:
    """The configuration at ``path``; ConfigError listing every problem with its line."""
    return read.load_file(path, _config)


def load_central_config_text(text: str, path: Path) -> CentralServerConfig:
    return read.load_text(text, path, _config)


def parse_central_config(document: YamlDocument) -> CentralServerConfig:
    return read.parse_document(document, _config)


def _config(reader: read.Reader) -> CentralServerConfig:
    # Read in the order of central.example.yaml, which is also the order "known keys" lists.
    root = reader.root()
    storage = root.section("storage").get("dir", read.file_path(reader.base, "a directory"), Path(""))
    storage_dir = storage if str(storage) else Path("/var/lib/loa-central")
    listen = root.section("http").get("listen", _HOST_PORT, "127.0.0.1:8080")
    http_host, http_port = _split(listen)
    public_url = root.get("public_url", _HTTP_URL, f"http://{http_host}:{http_port}", required=True)
    mqtt = _mqtt(root.section("mqtt"), reader.base)
    default_db = f"sqlite:///{(storage_dir / 'central.db').absolute()}"
    database_url = root.section("database").get("url", _DATABASE_URL, default_db)
    audio_mb = root.section("audio").get("max_mb", _MEGABYTES, 50)
    devices = root.section("devices")
    offline_after = devices.get(
        "offline_after",
        read.duration(timedelta(seconds=10), timedelta(days=1), timedelta(minutes=3)),
        timedelta(minutes=3),
    )
    timezone = devices.get("timezone", read.TIME_ZONE, ZoneInfo("Asia/Ho_Chi_Minh"))
    lifetime = root.section("commands").get(
        "lifetime",
        read.duration(timedelta(minutes=1), timedelta(hours=24), timedelta(hours=1)),
        timedelta(hours=1),
    )
    retention = _retention(root.section("retention"))
    voice = root.section("tts").get("voice", read.text_matching("an espeak-ng voice such as vi"), "vi")
    level = root.section("logging").get("level", read.choice(LogLevel), "info")
    return CentralServerConfig(
        reader.document.path, storage_dir, HttpConfig(http_host, http_port), public_url.rstrip("/"), mqtt,
        database_url, audio_mb * 1024 * 1024, offline_after, lifetime, voice, level, timezone, retention,
    )  # fmt: skip


def _retention(section: read.Section) -> RetentionConfig:
    days = read.whole(1, MAX_DAYS, f"a whole number of days from 1 to {MAX_DAYS}")
    default = RetentionConfig()
    return RetentionConfig(
        section.get("telemetry_days", days, default.telemetry_days),
        section.get("events_days", days, default.events_days),
        section.get("playlog_days", _PLAYLOG_DAYS, default.playlog_days),
        section.get("commands_days", days, default.commands_days),
        section.get("audit_days", _AUDIT_DAYS, default.audit_days),
    )


def _days_at_least(minimum: int, why: str) -> read.Kind[int]:
    """Whole days from ``minimum``: a lower value is refused with ``why`` as the hint."""

    def convert(value: object, text: str) -> int:
        days = read.whole(1, MAX_DAYS).convert(value, text)
        if days < minimum:
            raise ValueError(f"is below {minimum} days", why)
        return days

    return read.Kind(f"a whole number of days from {minimum} to {MAX_DAYS}", convert)


_PLAYLOG_DAYS = _days_at_least(
    MIN_PLAYLOG_DAYS,
    "the play log backs the yearly broadcast report, which covers a calendar year and is filed in "
    f"December: keep it at least {MIN_PLAYLOG_DAYS} days",
)
_AUDIT_DAYS = _days_at_least(
    MIN_AUDIT_DAYS,
    "the audit log is the record of who sent which bulletin and command, kept for inspections: keep it "
    f"at least {MIN_AUDIT_DAYS} days; the default is five years, 1825",
)


def _mqtt(section: read.Section, base: Path) -> MqttConfig:
    broker = section.get("broker", _BROKER, EMBEDDED)
    listen_host, listen_port = _split(section.get("listen", _HOST_PORT, "0.0.0.0:1883"))
    box_url = section.optional("box_url", _BOX_MQTT_URL)
    username = section.optional("username", _USER)
    password_file = section.optional("password_file", read.file_path(base, "the path of a file"))
    tls_listen = section.optional("tls_listen", _HOST_PORT)
    pem = read.file_path(base, "the path of a PEM file")
    cert_file, key_file = section.optional("tls_cert_file", pem), section.optional("tls_key_file", pem)
    box_ca_file = section.optional("box_ca_file", pem)
    tls = None
    if tls_listen is not None:
        for key, value in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
            if value is None:
                section.missing(key, "the path of a PEM file (required with mqtt.tls_listen)")
        if cert_file is not None and key_file is not None:
            tls_host, tls_port = _split(tls_listen)
            tls = TlsListener(tls_host, tls_port, cert_file, key_file)
    elif cert_file is not None or key_file is not None:
        section.missing("tls_listen", "host:port such as 0.0.0.0:8883 (the TLS files are for its listener)")
    return MqttConfig(broker, listen_host, listen_port, box_url, username, password_file, tls, box_ca_file)


def _split(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host, int(port)
