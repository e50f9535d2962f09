"""central.example.yaml loads, and a wrong central config names file, line, key and what was expected."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from central.cli import DEFAULT_CONFIG
from central.config import RetentionConfig, load_central_config
from foundation.errors import ConfigError
from tests.test_units import directives

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    config = load_central_config(ROOT / "central.example.yaml")
    assert config.public_url == "https://loa.example.vn"
    assert config.api_url == "https://loa.example.vn/api"
    assert config.mqtt.embedded and (config.mqtt.listen_host, config.mqtt.listen_port) == ("0.0.0.0", 1883)
    assert config.box_mqtt_url == "mqtt://loa.example.vn:1883"
    assert config.database_url == "sqlite:////var/lib/loa-central/central.db"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.offline_after == timedelta(minutes=3)
    assert config.box_timezone.key == "Asia/Ho_Chi_Minh"
    assert config.audio_max_bytes == 50 * 1024 * 1024
    assert config.retention == RetentionConfig(
        telemetry_days=30, events_days=400, playlog_days=400, commands_days=400, audit_days=1825
    )
    # every key the reader knows appears in the example (commented out or not)
    text = (ROOT / "central.example.yaml").read_text(encoding="utf-8")
    keys = ("dir:", "listen:", "public_url:", "broker:", "box_url:", "username:", "password_file:", "url:",
            "max_mb:", "offline_after:", "timezone:", "lifetime:", "telemetry_days:", "events_days:",
            "playlog_days:", "commands_days:", "audit_days:", "voice:", "level:", "tls_listen:",
            "tls_cert_file:", "tls_key_file:", "box_ca_file:")  # fmt: skip
    for key in keys:
        assert key in text


def test_a_minimal_file_takes_the_defaults_under_its_storage_dir(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(f"storage:\n  dir: {tmp_path}/data\npublic_url: http://10.0.0.5:8080\n", encoding="utf-8")
    config = load_central_config(path)
    assert config.database_url == f"sqlite:///{tmp_path}/data/central.db"
    assert config.box_mqtt_url == "mqtt://10.0.0.5:1883"
    assert config.signing_key_file == tmp_path / "data" / "signing-key.pem"


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(
        "storage:\n  dir: /srv/loa\nhttp:\n  listen: 0.0.0.0:99999\nmqtt:\n  broker: tcp://x:1\n"
        "  lisen: 0.0.0.0:1883\ndevices:\n  offline_after: 3\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_central_config(path)
    lines = [str(problem) for problem in caught.value.problems]
    assert any(line.startswith(f"{path}:4: http.listen: '0.0.0.0:99999' does not fit") for line in lines)
    assert any(
        line.startswith(f"{path}:6") and "mqtt.broker" in line and "embedded" in line for line in lines
    )
    assert any(line.startswith(f"{path}:7") and "did you mean 'listen'" in line for line in lines)
    assert any(line.startswith(f"{path}:9") and "devices.offline_after" in line for line in lines)
    assert any("public_url" in line and "missing" in line for line in lines)


def test_a_tls_listener_needs_its_certificate_and_key_and_makes_boxes_use_mqtts(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    base = "public_url: https://loa.example.vn\nmqtt:\n  listen: 127.0.0.1:1883\n"
    path.write_text(base + "  tls_listen: 0.0.0.0:8883\n  tls_key_file: /etc/loa/tls/privkey.pem\n")
    with pytest.raises(ConfigError) as caught:
        load_central_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2: mqtt.tls_cert_file: missing: expected the path of a PEM file"
        " (required with mqtt.tls_listen)"
    ]
    path.write_text(base + "  tls_cert_file: fullchain.pem\n  tls_key_file: privkey.pem\n")
    with pytest.raises(ConfigError, match=r"mqtt.tls_listen: missing: expected host:port"):
        load_central_config(path)
    path.write_text(
        base + "  tls_listen: 0.0.0.0:8883\n  tls_cert_file: fullchain.pem\n  tls_key_file: k.pem\n"
    )
    config = load_central_config(path)
    assert config.mqtt.tls is not None and config.mqtt.tls.cert_file == tmp_path / "fullchain.pem"
    assert config.box_mqtt_url == "mqtts://loa.example.vn:8883"


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("public_url: http://a:1\npublic_url: http://b:1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"central.yaml:2"):
        load_central_config(path)


def test_the_example_the_commands_and_the_units_agree_on_paths() -> None:
    """The config the units run with is the commands' default and the example's home; the example's
    storage.dir is the unit's StateDirectory (the one place the service may write)."""
    serve = directives(ROOT / "systemd" / "loa-central.service")
    feeds = directives(ROOT / "systemd" / "loa-central-feeds.service")
    for unit in (serve, feeds):
        [command] = unit["ExecStart"]
        assert f"--config {DEFAULT_CONFIG} " in command
    assert str(DEFAULT_CONFIG) == "/etc/loa/central.yaml"
    example = (ROOT / "central.example.yaml").read_text(encoding="utf-8")
    assert f"loa-central --config {DEFAULT_CONFIG} check-config" in example
    [state] = serve["StateDirectory"]
    assert load_central_config(ROOT / "central.example.yaml").storage_dir == Path("/var/lib") / state


def test_retention_takes_days_and_keeps_the_play_log_for_the_yearly_report(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("public_url: http://a:1\nretention:\n  telemetry_days: 7\n  playlog_days: 1000\n"
                    "  commands_days: 90\n  audit_days: 3650\n",
                    encoding="utf-8")  # fmt: skip
    assert load_central_config(path).retention == RetentionConfig(7, 400, 1000, 90, 3650)
    path.write_text(
        "public_url: http://a:1\nretention:\n  telemetry_days: 0\n  events_days: '90'\n"
        "  playlog_days: 365\n  telemetry_dys: 3\n  audit_days: 399\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_central_config(path)
    lines = [str(problem) for problem in caught.value.problems]
    assert lines[0] == (f"{path}:3: retention.telemetry_days: '0' is out of range: expected a whole number "
                        "of days from 1 to 36500")  # fmt: skip
    assert lines[1].startswith(f"{path}:4: retention.events_days: ") and "remove the quotes: 90" in lines[1]
    assert lines[2].startswith(f"{path}:5: retention.playlog_days: '365' is below 400 days: expected a whole "
                               "number of days from 400 to 36500 (the play log backs the yearly broadcast "
                               "report")  # fmt: skip
    assert lines[3] == f"{path}:6: retention.telemetry_dys: unknown key (did you mean 'telemetry_days'?)"
    assert lines[4] == (f"{path}:7: retention.audit_days: '399' is below 400 days: expected a whole number "
                        "of days from 400 to 36500 (the audit log is the record of who sent which bulletin "
                        "and command, kept for inspections: keep it at least 400 days; the default is five "
                        "years, 1825)")  # fmt: skip
    assert len(lines) == 5
