"""``loa-central device remove`` and ``device rotate-password``: on the real embedded Mosquitto a box
removed, or still on its old password, is cut off at once and refused when it comes back, while the
other boxes keep their connections; on both databases a removed box's records stay in the reports
and the API, and no command, bulletin or manifest reaches it any more."""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from central import cli, db, registry
from central.app import create_app
from central.broker import CENTRAL_USER, central_password
from central.config import CentralServerConfig
from central.context import Central
from central.ingest import Ingestor, Outcome
from tests.agent_harness import running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file
from tests.central_harness import (
    BOX_ZONE,
    MqttClient,
    RecordingPublisher,
    initialized,
    loa_central,
    login,
    make_central,
    sign_in,
    upload,
)
from tests.central_records import ingest, playlog
from tests.mqtt_broker import free_port
from tests.test_central_broker import _central  # the running broker with three boxes added
from tests.test_central_end_to_end import DEVICE, Server  # loa-central serve as a process

DAY = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[CentralServerConfig, dict[str, str]]]:
    yield from _central(tmp_path)


def connect_answer(port: int, user: str, password: str) -> str:
    """What the broker answers a new connection of ``user`` (``Success`` or why not); then gone."""
    answers: queue.Queue[str] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.put(str(reason))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return answers.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_removed_box_is_cut_off_and_refused_while_the_others_keep_talking(
    running: tuple[CentralServerConfig, dict[str, str]],
) -> None:
    config, passwords = running
    port = config.mqtt.listen_port
    box = MqttClient(port, "xa-a-01", passwords["xa-a-01"])
    other = MqttClient(port, "xa-a-02", passwords["xa-a-02"])
    other.subscribe("loa/v1/xa-a-02/cmd")
    sender = MqttClient(port, CENTRAL_USER, central_password(config))
    done = loa_central(config.source, "device", "remove", "xa-a-01")
    assert "xa-a-01 removed from service" in done.stdout
    box.disconnected.get(timeout=10)  # the connection it had is cut, not left until it drops
    box.close()
    assert connect_answer(port, "xa-a-01", passwords["xa-a-01"]) == "Not authorized"
    sender.publish("loa/v1/xa-a-02/cmd", "still here")
    assert other.next() == ("loa/v1/xa-a-02/cmd", b"still here")
    assert other.disconnected.empty()
    assert connect_answer(port, "xa-b-01", passwords["xa-b-01"]) == "Success"
    passwd = (config.broker_dir / "passwd").read_text(encoding="utf-8")
    acl = (config.broker_dir / "acl").read_text(encoding="utf-8")
    assert "xa-a-01:" not in passwd and "xa-a-02:" in passwd
    assert "loa/v1/xa-a-01/" not in acl and "user xa-a-02" in acl
    other.close()
    sender.close()


def test_a_rotated_password_works_at_once_and_the_old_one_is_cut_off(
    running: tuple[CentralServerConfig, dict[str, str]], tmp_path: Path
) -> None:
    config, passwords = running
    port = config.mqtt.listen_port
    box = MqttClient(port, "xa-a-01", passwords["xa-a-01"])
    other = MqttClient(port, "xa-a-02", passwords["xa-a-02"])
    out = tmp_path / "rotated"
    done = loa_central(config.source, "device", "rotate-password", "xa-a-01", "--out", str(out))
    assert "new broker password" in done.stdout and str(out / "mqtt-password") in done.stdout
    assert [path.name for path in out.iterdir()] == ["mqtt-password"]
    assert stat.S_IMODE((out / "mqtt-password").stat().st_mode) == 0o600
    new = (out / "mqtt-password").read_text(encoding="utf-8").strip()
    assert len(new) >= 20 and new != passwords["xa-a-01"] and new not in done.stdout
    box.disconnected.get(timeout=10)  # still on the old password: cut
    box.close()
    assert connect_answer(port, "xa-a-01", passwords["xa-a-01"]) == "Not authorized"
    MqttClient(port, "xa-a-01", new).close()
    assert other.disconnected.empty()
    other.close()


def test_remove_and_rotate_say_in_one_sentence_what_is_wrong(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    loa_central(config, "device", "add", "xa-a-01", "--province", "tinh", "--commune", "xa-a",
                "--out", str(tmp_path / "box"))  # fmt: skip
    unknown = loa_central(config, "device", "remove", "xa-z-09", check=False)
    assert unknown.returncode == 2
    assert unknown.stderr == "loa-central: cannot remove device xa-z-09: no such device is registered\n"
    out = tmp_path / "out"
    rotate = loa_central(config, "device", "rotate-password", "xa-z-09", "--out", str(out), check=False)
    assert rotate.returncode == 2 and "no such device is registered" in rotate.stderr and not out.exists()
    no_out = loa_central(config, "device", "rotate-password", "xa-a-01", check=False)
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    loa_central(config, "device", "remove", "xa-a-01")
    (tmp_path / "data" / "mosquitto" / "passwd").write_text("xa-a-01:left-by-a-crash\n", encoding="utf-8")
    again = loa_central(config, "device", "remove", "xa-a-01")  # finishes a removal cut short
    assert "xa-a-01 was removed from service on 20" in again.stdout
    assert "xa-a-01" not in (tmp_path / "data" / "mosquitto" / "passwd").read_text(encoding="utf-8")
    rotate = loa_central(config, "device", "rotate-password", "xa-a-01", "--out", str(out), check=False)
    assert rotate.returncode == 2 and "removed from service" in rotate.stderr and not out.exists()
    add = loa_central(config, "device", "add", "xa-a-01", "--province", "tinh", "--commune", "xa-a",
                      "--out", str(out), check=False)  # fmt: skip
    assert add.returncode == 2 and "register the box under a new id" in add.stderr
    engine = db.open_engine(f"sqlite:///{tmp_path / 'data' / 'central.db'}")
    try:
        actions = [(row["user"], row["action"], row["target"]) for row in registry.audit_log(engine)]
    finally:
        engine.dispose()
    assert actions[0] == ("loa-central", "device.remove", "xa-a-01")
    assert [action for action in actions if action[1].startswith("device.")] == [actions[0]]


def remove(central: Central, device: str) -> None:
    assert cli.main([f"--config={central.config.source}", "device", "remove", device]) == 0


def test_a_removed_box_stays_in_the_reports_but_nothing_new_reaches_it(
    client: TestClient, central: Central, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    headers = login(client)
    sha = upload(client, headers, tone_file(tmp_path, 440, 60.0)).json()["sha256"]
    daily = client.post("/api/v1/bulletins", headers=headers, json={
        "title": "Bản tin sáng", "audio_sha256": sha, "level": "priority", "targets": {"communes": ["xa-a"]},
        "rrule": "FREQ=DAILY", "dtstart": "2099-03-10 06:00"})  # fmt: skip
    item = f"bulletin-{daily.json()['id']}"
    ingest(central, playlog("xa-a-01", 1, DAY, "completed", audio=sha, played_s=60.0, item=item))
    remove(central, "xa-a-01")
    with caplog.at_level(logging.WARNING, logger="central.ingest"):
        outcomes = Ingestor(central.engine, central.clock).ingest([
            playlog("xa-a-01", 2, DAY, "completed", audio=sha, played_s=60.0, item="late"),
            playlog("xa-a-02", 1, DAY, "completed", audio=sha, played_s=60.0, item=item)])  # fmt: skip
    assert outcomes == [Outcome.DROPPED, Outcome.STORED]
    assert "box xa-a-01 was removed from service on" in caplog.text

    devices = {row["id"]: row for row in client.get("/api/v1/devices", headers=headers).json()}
    assert devices["xa-a-01"]["removed_at"] is not None and devices["xa-a-01"]["online"] is False
    assert devices["xa-a-02"]["removed_at"] is None
    logs = client.get("/api/v1/playlogs", headers=headers, params={"device": "xa-a-01"}).json()
    assert [log["item_id"] for log in logs] == [item]  # what it played stays; what came after, not
    central.clock = lambda: datetime(2099, 3, 12, tzinfo=BOX_ZONE)
    headers = login(client)  # a token of that day
    query = {"from": "2099-03-10", "to": "2099-03-11", "group_by": "commune"}
    answer = client.get("/api/v1/reports/broadcasts", headers=headers, params=query)
    assert answer.status_code == 200, answer.text
    units = answer.json()["units"]
    [row] = [row for row in units if row["unit"] == "xa-a"]
    # both boxes played on the 10th; on the 11th only xa-a-02 was still expected to
    assert (row["boxes"], row["completed"], row["unreported"]) == (2, 2, 1)

    group = client.post("/api/v1/commands", headers=headers,
                        json={"type": "stop", "targets": {"communes": ["xa-a"]}})  # fmt: skip
    acks = client.get(f"/api/v1/commands/{group.json()['id']}", headers=headers).json()["acks"]
    assert list(acks) == ["xa-a-02"]
    named = client.post("/api/v1/commands", headers=headers,
                        json={"type": "stop", "targets": {"devices": ["xa-a-01", "xa-a-02"]}})  # fmt: skip
    assert named.status_code == 422 and "removed from service: xa-a-01" in named.text
    bulletin = client.post("/api/v1/bulletins", headers=headers, json={
        "title": "Tin chiều", "audio_sha256": sha, "level": "priority", "targets": {"units": ["tinh"]},
        "at": "2099-03-10T17:00:00+07:00"})  # fmt: skip
    assert bulletin.status_code == 201, bulletin.text
    assert bulletin.json()["targets"] == {"xa-a-02": "scheduled", "xa-b-01": "scheduled"}
    remove(central, "xa-b-01")
    nobody = client.post("/api/v1/commands", headers=headers,
                         json={"type": "stop", "targets": {"communes": ["xa-b"]}})  # fmt: skip
    assert nobody.status_code == 422 and "no box in service is registered in xa-b" in nobody.text
    assert client.get("/api/v1/devices/xa-a-01/manifest").status_code == 410
    assert client.get("/api/v1/devices/xa-a-02/manifest").status_code == 200
    time = client.get("/api/v1/time", params={"device": "xa-a-01", "nonce": "n" * 32})
    assert time.status_code == 410


def test_a_bulletin_offered_before_a_box_was_removed_is_accepted_for_the_others_only(
    client: TestClient, central: Central, tmp_path: Path
) -> None:
    province = login(client, "op-tinh")
    sha = upload(client, province, tone_file(tmp_path, 440, 1.0)).json()["sha256"]
    offered = client.post("/api/v1/bulletins", headers=province, json={
        "title": "Tin tỉnh", "audio_sha256": sha, "level": "normal", "targets": {"communes": ["xa-a"]},
        "rrule": "FREQ=DAILY", "dtstart": "2099-01-01 06:00"})  # fmt: skip
    assert offered.json()["targets"] == {"xa-a-01": "offered", "xa-a-02": "offered"}
    remove(central, "xa-a-01")
    accepted = client.post(f"/api/v1/bulletins/{offered.json()['id']}/accept", headers=login(client, "op-a"))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["devices"] == ["xa-a-02"] and accepted.json()["manifests"] == {"xa-a-02": 1}


def test_the_pages_show_a_removed_box_as_removed_and_offer_it_to_no_form(tmp_path: Path) -> None:
    central = make_central(tmp_path, RecordingPublisher())
    remove(central, "xa-a-01")
    with TestClient(create_app(central), follow_redirects=False) as client:
        sign_in(client, "op-a")
        page = client.get("/boxes").text
        rows = dict(re.findall(r'<tr data-box="([^"]+)">.*?class="badge (\w+)"', page, re.S))
        assert rows == {"xa-a-01": "removed", "xa-a-02": "offline"}
        box = client.get("/boxes/xa-a-01").text
        assert "đã ngừng sử dụng" in box and "/emergency?device=xa-a-01" not in box
        assert "/emergency?device=xa-a-02" in client.get("/boxes/xa-a-02").text
        form = client.get("/emergency").text
        assert 'value="xa-a-02"' in form and 'value="xa-a-01"' not in form
    central.engine.dispose()


def test_a_database_made_before_removal_existed_gets_its_column_on_start(central: Central) -> None:
    with central.engine.begin() as conn:
        conn.execute(text("ALTER TABLE devices DROP COLUMN removed_at"))
    central.engine.dispose()
    engine = db.open_engine(central.config.database_url)
    try:
        assert registry.removed_at(engine, "xa-a-01") is None
        at, removed_now = registry.remove_device(engine, "xa-a-01")
        assert removed_now and registry.remove_device(engine, "xa-a-01") == (at, False)
        assert registry.removed_at(engine, "xa-a-01") == at and at <= datetime.now(UTC)
        assert sorted(name for name, _ in registry.device_credentials(engine)) == ["xa-a-02", "xa-b-01"]
    finally:
        engine.dispose()


def test_a_real_box_is_cut_off_by_rotation_back_with_the_new_file_and_cut_off_by_removal(
    tmp_path: Path,
) -> None:
    """``loa-central serve`` and the real agent: what a technician sees, end to end."""
    http_port, mqtt_port = free_port(), free_port()
    config = initialized(tmp_path / "central", http_port=http_port, mqtt_port=mqtt_port)
    box = tmp_path / "box"
    loa_central(config, "device", "add", DEVICE, "--province", "tinh", "--commune", "xa-test",
                "--out", str(box), "--box-dir", str(box))  # fmt: skip
    write_schedule(box)
    agent_config = write_config(box, extra=(box / "central.yaml").read_text(encoding="utf-8"))
    server = Server(config, http_port, mqtt_port)
    try:
        server.login()
        with running_agent(agent_config) as running:
            server.until(f"/devices/{DEVICE}", lambda device: device["online"])
            loa_central(config, "device", "rotate-password", DEVICE, "--out", str(tmp_path / "new"))
            running.wait_for(lambda: running.agent.link is not None and not running.agent.link.up, 10)
            # offline at once: the broker sends no will for a connection it cuts on a reload
            assert server.call("GET", f"/devices/{DEVICE}")["online"] is False
        shutil.copy(tmp_path / "new" / "mqtt-password", box / "mqtt-password")  # what the technician does
        with running_agent(agent_config) as running:
            server.until(f"/devices/{DEVICE}", lambda device: device["online"])
            loa_central(config, "device", "remove", DEVICE)
            running.wait_for(lambda: running.agent.link is not None and not running.agent.link.up, 10)
        device = server.call("GET", f"/devices/{DEVICE}")
        assert device["removed_at"] is not None and device["online"] is False
    finally:
        server.stop()


def test_device_list_shows_every_box_with_its_commune_and_whether_it_is_removed(tmp_path: Path) -> None:
    config = initialized(tmp_path)
    empty = loa_central(config, "device", "list")
    assert empty.stdout.endswith("(no box registered yet: loa-central device add)\n")
    for device, commune in (("xa-a-01", "xa-a"), ("xa-b-01", "xa-b")):
        name = f"Xã {commune[-1].upper()}"
        loa_central(config, "device", "add", device, "--province", "tinh", "--commune", commune,
                    "--commune-name", name, "--out", str(tmp_path / device))  # fmt: skip
    loa_central(config, "device", "remove", "xa-b-01")
    lines = loa_central(config, "device", "list").stdout.splitlines()
    assert lines[0].split() == ["BOX", "COMMUNE", "STATUS", "LAST", "SEEN"]
    assert re.fullmatch(r"xa-a-01 +Xã A +offline +never", lines[1]), lines
    assert re.fullmatch(r"xa-b-01 +Xã B +removed 20\d\d-\d\d-\d\d +never", lines[2]), lines
    listed = json.loads(loa_central(config, "device", "list", "--json").stdout)
    assert [(box["id"], box["unit"], box["status"]) for box in listed] == [
        ("xa-a-01", "xa-a", "offline"),
        ("xa-b-01", "xa-b", "removed"),
    ]
    assert listed[1]["removed_at"] is not None and listed[0]["last_seen"] is None
