"""``loa-central init`` and ``device add`` as a technician types them, with the real agent's check-config."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from sqlalchemy import select

from agent.config import load_config
from agent.link import load_signing_keys, read_password
from central import db, registry
from central.passwords import verify_password
from tests.agent_harness import write_config
from tests.central_harness import ADMIN_PASSWORD, BIN, initialized, loa_central, write_central_config


def test_init_creates_the_database_the_key_pair_and_the_first_admin(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    data = tmp_path / "data"
    assert stat.S_IMODE((data / "signing-key.pem").stat().st_mode) == 0o600
    assert isinstance(load_pem_public_key((data / "signing-key.pub.pem").read_bytes()), Ed25519PublicKey)
    engine = db.open_engine(f"sqlite:///{data / 'central.db'}")
    found = registry.user_with_hash(engine, "admin")
    assert found is not None and found[0].role == "admin" and found[0].unit is None
    assert verify_password(found[1], ADMIN_PASSWORD) and ADMIN_PASSWORD not in found[1]
    # a second init changes nothing and says why
    password = str(tmp_path / "admin-password")
    again = loa_central(config, "init", "--admin", "admin", "--password-file", password, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_refuses_a_missing_or_short_password_and_never_has_a_default(tmp_path: Path) -> None:
    config = write_central_config(tmp_path)
    short = tmp_path / "short"
    short.write_text("admin\n", encoding="utf-8")
    refused = loa_central(config, "init", "--admin", "admin", "--password-file", str(short), check=False)
    assert refused.returncode == 2 and "at least 10 characters" in refused.stderr
    assert not (tmp_path / "data" / "signing-key.pem").exists()
    missing = loa_central(config, "init", "--admin", "admin", check=False)
    assert missing.returncode == 2 and "--password-file" in missing.stderr


def test_a_bad_config_is_reported_with_its_line(tmp_path: Path) -> None:
    config = write_central_config(tmp_path, extra="devices: {offline_after: 3}\n")
    done = loa_central(config, "check-config", check=False)
    assert done.returncode == 2
    assert f"loa-central: {config}:5: devices.offline_after: '3' has no unit" in done.stderr


def test_device_add_writes_what_the_box_needs_and_the_agent_accepts_it(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    loa_central(config, "device", "add", "xa-quang-son-01", "--province", "tinh-quang-tri",
                "--province-name", "Tỉnh Quảng Trị", "--commune", "xa-quang-son",
                "--commune-name", "Xã Quảng Sơn", "--out", str(box), "--box-dir", str(box))  # fmt: skip
    assert stat.S_IMODE((box / "mqtt-password").stat().st_mode) == 0o600
    agent_config = write_config(box)  # a working agent config (device test-box-01 is irrelevant here)
    section = (box / "central.yaml").read_text(encoding="utf-8")
    agent_config.write_text(agent_config.read_text(encoding="utf-8") + section, encoding="utf-8")
    (box / "schedule.yaml").write_text("items: []\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    command = [str(BIN / "loa-agent"), "--config", str(agent_config), "check-config"]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=box, env=env)
    assert checked.returncode == 0, checked.stderr
    loaded = load_config(agent_config)
    assert loaded.central is not None
    assert loaded.central.groups == ("xa-quang-son", "tinh-quang-tri")
    assert loaded.central.api_url == "http://127.0.0.1:8080/api"
    assert loaded.central.username == "xa-quang-son-01"
    # the files it names hold the key the central signs with and the box's broker password
    [key] = load_signing_keys(loaded.central, agent_config)
    central_key = load_pem_public_key((tmp_path / "data" / "signing-key.pub.pem").read_bytes())
    assert isinstance(central_key, Ed25519PublicKey)
    raw = (Encoding.Raw, PublicFormat.Raw)
    assert key.public_bytes(*raw) == central_key.public_bytes(*raw)
    password = read_password(loaded.central, agent_config)
    engine = db.open_engine(f"sqlite:///{tmp_path / 'data' / 'central.db'}")
    with engine.connect() as conn:
        unit = conn.execute(select(db.units.c.name).where(db.units.c.id == "xa-quang-son")).scalar_one()
        hashed = conn.execute(select(db.device_credentials.c.mqtt_password_hash)).scalar_one()
    assert unit == "Xã Quảng Sơn" and password is not None and password not in hashed
    passwd = (tmp_path / "data" / "mosquitto" / "passwd").read_text(encoding="utf-8")
    assert f"xa-quang-son-01:{hashed}\n" in passwd


def test_device_add_refuses_a_commune_under_another_province(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    args = ["--commune", "xa-quang-son", "--out", str(tmp_path / "out")]
    loa_central(config, "device", "add", "xa-quang-son-01", "--province", "tinh-a", *args)
    moved = loa_central(
        config, "device", "add", "xa-quang-son-02", "--province", "tinh-b", *args, check=False
    )
    assert moved.returncode == 2 and "unit xa-quang-son is a commune under tinh-a" in moved.stderr
    twice = loa_central(
        config, "device", "add", "xa-quang-son-01", "--province", "tinh-a", *args, check=False
    )
    assert twice.returncode == 2 and "already registered" in twice.stderr


def test_a_district_sits_between_province_and_commune_and_an_upstream_token_reads(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    box = tmp_path / "box"
    loa_central(config, "device", "add", "xa-c-01", "--province", "tinh", "--district", "huyen-cu",
                "--district-name", "Huyện Cũ", "--commune", "xa-c", "--out", str(box))  # fmt: skip
    assert "groups: [xa-c, huyen-cu, tinh]" in (box / "central.yaml").read_text(encoding="utf-8")
    password = tmp_path / "admin-password"
    loa_central(config, "user", "add", "so-tttt", "--role", "upstream", "--password-file", str(password))
    token = loa_central(config, "token", "add", "--user", "so-tttt", "--label", "so-tttt").stdout.strip()
    engine = db.open_engine(f"sqlite:///{tmp_path / 'data' / 'central.db'}")
    with engine.connect() as conn:
        stored = conn.execute(select(db.api_tokens.c.token_sha256, db.api_tokens.c.expires_at)).one()
        level = conn.execute(select(db.units.c.level).where(db.units.c.id == "huyen-cu")).scalar_one()
    assert level == "district" and token not in stored.token_sha256 and stored.expires_at is not None
    user = registry.user_for_token(engine, token, registry.now())
    assert user is not None and (user.name, user.role, user.unit) == ("so-tttt", "upstream", None)
    missing = loa_central(config, "token", "add", "--user", "nobody", "--label", "x", check=False)
    assert missing.returncode == 2 and "no user nobody" in missing.stderr


def test_serve_refuses_a_signing_key_others_may_read(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    key = tmp_path / "data" / "signing-key.pem"
    key.chmod(0o640)
    refused = loa_central(config, "serve", check=False)
    assert refused.returncode == 2
    assert f"{key}: mode 640: must be readable by the service alone (0600)" in refused.stderr
    assert "PRIVATE KEY" not in refused.stderr
