"""The broadcast report over play logs ingested as boxes send them (the server's real ingest, on a
real SQLite file and a real PostgreSQL): counts, minutes, reasons, what boxes never reported,
grouping along the unit tree, scope by role, CSV a spreadsheet opens."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central import cli
from central.context import Central
from tests.audio_fixtures import tone_file
from tests.central_harness import BOX_ZONE, login, upload
from tests.central_records import ingest, playlog

DAY = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)


@pytest.fixture
def central(central: Central, tmp_path: Path) -> Central:
    """The shared one (on each database) with an old record: a box in a commune under a district, in
    the same province."""
    config = f"--config={tmp_path / 'central.yaml'}"
    assert cli.main([config, "device", "add", "xa-c-01", "--province", "tinh",
                     "--district", "huyen-d", "--district-name", "Huyện Đông", "--commune", "xa-c",
                     "--commune-name", "Xã Cẩm Phước", "--out", str(tmp_path / "c"),
                     "--box-dir", str(tmp_path / "c")]) == 0  # fmt: skip
    return central


@pytest.fixture
def sha(client: TestClient, tmp_path: Path) -> str:
    """A 60-second bulletin audio the central holds."""
    answer = upload(client, login(client), tone_file(tmp_path, 440, 60.0))
    assert answer.status_code == 201
    return str(answer.json()["sha256"])


def a_week(central: Central, sha: str) -> None:
    """xa-a's two boxes: two completed, one interrupted after 15 s, one missed (clock); xa-b: one failed,
    one emergency completed; xa-c (under a district): one skipped; one record on the day after."""
    minute = timedelta(minutes=1)
    ingest(central,
           playlog("xa-a-01", 1, DAY, "playing", audio=sha, played_s=None),
           playlog("xa-a-01", 2, DAY, "completed", audio=sha, played_s=60.0),  # replaces seq 1
           playlog("xa-a-01", 2, DAY, "completed", audio=sha, played_s=60.0),  # sent twice: stored once
           playlog("xa-a-02", 1, DAY, "completed", audio=sha, played_s=60.0),
           playlog("xa-a-02", 2, DAY + 10 * minute, "interrupted", audio=sha, played_s=15.0,
                   item="bulletin-2", reason="stopped by a command"),
           playlog("xa-a-01", 3, DAY + 20 * minute, "missed", audio=sha, item="bulletin-3",
                   reason="the clock was not trusted"),
           playlog("xa-b-01", 1, DAY, "failed", audio=sha, reason="audio missing"),
           playlog("xa-b-01", 2, DAY + minute, "completed", audio=sha, level="emergency", played_s=60.0,
                   item="central-command-x"),
           playlog("xa-c-01", 1, DAY, "skipped", audio=sha, reason="could not start within 5min of its time"),
           playlog("xa-a-01", 4, DAY + timedelta(days=1), "completed", audio=sha, played_s=60.0),
           )  # fmt: skip


def report(client: TestClient, user: str = "admin", **params: str) -> list[dict[str, object]]:
    query = {"from": "2099-03-10", "to": "2099-03-10", "group_by": "commune"} | params
    answer = client.get("/api/v1/reports/broadcasts", params=query, headers=login(client, user))
    assert answer.status_code == 200, answer.text
    return list(answer.json()["units"])


def test_the_report_counts_what_each_communes_boxes_played(client: TestClient, central: Central,
                                                           sha: str) -> None:  # fmt: skip
    a_week(central, sha)
    by_unit = {row["unit"]: row for row in report(client)}
    assert list(by_unit) == ["xa-a", "xa-b", "xa-c"]  # by name: Xã A, Xã B, Xã Cẩm Phước
    a = by_unit["xa-a"]
    assert (a["boxes"], a["scheduled"], a["completed"], a["interrupted"], a["missed"], a["failed"]) == (
        2, 4, 2, 1, 1, 0)  # fmt: skip
    assert a["missed_reasons"] == {"missed: the clock was not trusted": 1}
    assert a["scheduled_minutes"] == 4.0 and a["played_minutes"] == 2.25 and a["ratio"] == 0.5625
    b = by_unit["xa-b"]
    assert (b["scheduled"], b["failed"], b["completed"], b["emergency"], b["ratio"]) == (2, 1, 1, 1, 0.5)
    c = by_unit["xa-c"]
    assert c["name"] == "Xã Cẩm Phước" and c["skipped"] == 1 and c["played_minutes"] == 0.0
    assert c["missed_reasons"] == {"skipped: could not start within 5min of its time": 1}
    two_days = {row["unit"]: row for row in report(client, to="2099-03-11")}
    assert two_days["xa-a"]["completed"] == 3


def test_group_by_walks_the_tree_whose_levels_are_data(client: TestClient, central: Central,
                                                       sha: str) -> None:  # fmt: skip
    a_week(central, sha)
    [province] = report(client, group_by="province")
    assert (province["unit"], province["boxes"], province["scheduled"]) == ("tinh", 4, 7)
    districts = report(client, group_by="district")
    assert [(row["unit"], row["name"], row["scheduled"]) for row in districts] == [
        ("huyen-d", "Huyện Đông", 1), (None, "(no district)", 6)]  # fmt: skip
    refused = client.get("/api/v1/reports/broadcasts", headers=login(client),
                         params={"from": "2099-03-10", "to": "2099-03-10", "group_by": "hamlet"})  # fmt: skip
    assert refused.status_code == 422 and "levels: province, district, commune" in refused.json()["detail"]
    backwards = client.get("/api/v1/reports/broadcasts", headers=login(client),
                           params={"from": "2099-03-10", "to": "2099-03-01"})  # fmt: skip
    assert backwards.status_code == 422 and "before from" in backwards.json()["detail"]


def test_a_commune_operator_sees_only_its_communes_boxes(client: TestClient, central: Central,
                                                         sha: str) -> None:  # fmt: skip
    a_week(central, sha)
    assert [row["unit"] for row in report(client, "op-a")] == ["xa-a"]
    [province] = report(client, "viewer-a", group_by="province")
    assert (province["boxes"], province["scheduled"]) == (2, 4)
    assert client.get("/api/v1/reports/broadcasts", params={"from": "2099-03-10", "to": "2099-03-10"}
                      ).status_code == 401  # fmt: skip


def test_the_csv_opens_in_a_spreadsheet_with_vietnamese_intact(client: TestClient, central: Central,
                                                               sha: str) -> None:  # fmt: skip
    a_week(central, sha)
    answer = client.get("/api/v1/reports/broadcasts", headers=login(client), params={
        "from": "2099-03-10", "to": "2099-03-10", "format": "csv", "lang": "vi"})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in answer.headers["content-disposition"]
    body = answer.content
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body and b"\n" not in body.replace(b"\r\n", b"")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [row["Tên đơn vị"] for row in rows] == ["Xã A", "Xã B", "Xã Cẩm Phước"]
    assert rows[0]["Lý do bỏ lỡ"] == "missed: the clock was not trusted ×1" and rows[0]["Tỷ lệ"] == "0.5625"
    english = client.get("/api/v1/reports/broadcasts", headers=login(client), params={
        "from": "2099-03-10", "to": "2099-03-10", "format": "csv"}).content.decode("utf-8-sig")  # fmt: skip
    assert english.startswith("unit,name,level,boxes,scheduled,")


def test_a_scheduled_occurrence_a_box_never_reported_counts_as_unreported(
    client: TestClient, central: Central, sha: str
) -> None:
    headers = login(client)
    made = client.post("/api/v1/bulletins", headers=headers, json={
        "title": "Bản tin sáng", "audio_sha256": sha, "level": "priority", "targets": {"communes": ["xa-a"]},
        "rrule": "FREQ=DAILY", "dtstart": "2099-03-08 06:00"})  # fmt: skip
    assert made.status_code == 201, made.text
    item = f"bulletin-{made.json()['id']}"
    ingest(central, playlog("xa-a-01", 1, DAY, "completed", audio=sha, played_s=60.0, item=item))
    central.clock = lambda: datetime(2099, 3, 10, 6, 4, tzinfo=BOX_ZONE)  # 4 minutes after: not yet due
    [early] = [row for row in report(client) if row["unit"] == "xa-a"]
    assert (early["scheduled"], early["completed"], early["unreported"]) == (1, 1, 0)
    central.clock = lambda: datetime(2099, 3, 12, tzinfo=BOX_ZONE)
    [row] = [row for row in report(client) if row["unit"] == "xa-a"]
    assert (row["scheduled"], row["completed"], row["unreported"]) == (2, 1, 1)  # xa-a-02 said nothing
    assert row["scheduled_minutes"] == 2.0 and row["played_minutes"] == 1.0 and row["ratio"] == 0.5
    [week] = [
        row for row in report(client, **{"from": "2099-03-01", "to": "2099-03-31"}) if row["unit"] == "xa-a"
    ]
    assert week["unreported"] == 7  # 8, 9, 10 and 11 March on two boxes, less the one reported


def test_a_play_log_naming_the_boxs_cached_file_is_shown_and_counted_by_its_sha256(
    client: TestClient, central: Central, sha: str
) -> None:
    cached = f"/var/lib/loa/audio/{sha}"  # how a box names a central command's audio: its cached file
    ingest(central,
           playlog("xa-a-01", 1, DAY, "completed", audio=cached, played_s=30.0),
           playlog("xa-a-02", 1, DAY, "completed", audio="tin-rieng/sang.mp3", played_s=30.0))  # fmt: skip
    logs = client.get("/api/v1/playlogs", headers=login(client)).json()
    assert sorted(log["audio"] for log in logs) == sorted([sha, "tin-rieng/sang.mp3"])
    [row] = [row for row in report(client) if row["unit"] == "xa-a"]
    # the central's 60 s audio for the cached one; a box's own file counts what it played
    assert row["scheduled_minutes"] == 1.5 and row["ratio"] == 0.6667
