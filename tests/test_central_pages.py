"""The web pages through FastAPI's TestClient over a real SQLite file: sign-in with the API's accounts,
CSRF, Vietnamese and English, boxes and a box's page, bulletins, a commune's schedule, reports.
(tests/test_central_browser.py drives the same pages in a real headless Chromium.)"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central import db
from central.context import Central
from central.mqtt_link import Incoming
from central.web_text import EN, VI
from protocol.commands import verify_command
from tests.audio_fixtures import tone_file
from tests.central_harness import (
    ADMIN_PASSWORD,
    BOX_ZONE,
    RecordingPublisher,
    csrf_of,
    make_central,
    sign_in,
    upload,
)
from tests.central_harness import login as api_login
from tests.central_records import ingest, playlog

TEMPLATES = Path(__file__).resolve().parent.parent / "central" / "templates"


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    made = make_central(tmp_path, RecordingPublisher())
    yield made
    made.engine.dispose()


def test_every_phrase_the_templates_write_is_translated() -> None:
    phrases = set()
    for template in TEMPLATES.glob("*.html"):
        phrases |= set(re.findall(r'(?<![\w.])t\("([^"]+)"\)', template.read_text(encoding="utf-8")))
    assert len(phrases) > 80
    assert sorted(phrase for phrase in phrases if phrase not in VI) == []
    assert all(key in VI for key in EN)
    # written with its diacritics: only words that have none are plain ASCII
    plain = sorted(VI[phrase] for phrase in phrases if VI[phrase].isascii())
    assert plain == ["Theo", "Xem"]


def test_pages_need_a_sign_in_with_the_apis_accounts(client: TestClient, central: Central) -> None:
    answer = client.get("/boxes/xa-a-01")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/boxes/xa-a-01"
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"username": "admin", "password": "guess", "csrf": token})
    assert wrong.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu." in wrong.text
    elsewhere = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": token,
                                            "next": "//evil.example/x"})  # fmt: skip
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/boxes"
    page = client.get("/boxes")
    assert page.status_code == 200 and '<html lang="vi">' in page.text and "Cụm loa" in page.text
    with central.engine.connect() as conn:
        labels = conn.execute(select(db.api_tokens.c.label)).scalars().all()
    assert labels == ["web"]
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    with central.engine.connect() as conn:
        assert conn.execute(select(db.api_tokens)).all() == []  # signing out ends the token
    assert client.get("/boxes").status_code == 303


def test_a_form_post_without_the_browsers_csrf_token_is_refused(client: TestClient, central: Central) -> None:
    token = sign_in(client)
    for data in ({}, {"csrf": "forged-forged-forged-forged"}):
        answer = client.post("/emergency/confirm", data=data | {"target_kind": "units", "units": "tinh",
                                                                "text": "Khẩn cấp"})  # fmt: skip
        assert answer.status_code == 403 and "another site" in answer.text
    fresh = TestClient(client.app, follow_redirects=False)
    fresh.cookies.set("loa_session", client.cookies["loa_session"])
    assert fresh.post("/emergency/confirm", data={"csrf": token, "units": "tinh"}).status_code == 403
    with central.engine.connect() as conn:
        assert conn.execute(select(db.commands)).all() == []
    assert central.publisher.sent == []  # type: ignore[attr-defined]


def test_english_is_a_click_away_and_stays(client: TestClient) -> None:
    sign_in(client)
    english = client.get("/boxes?lang=en")
    assert '<html lang="en">' in english.text and ">Boxes<" in english.text and "Tiếng Việt" in english.text
    assert '<html lang="en">' in client.get("/reports").text  # the cookie keeps it
    assert '<html lang="vi">' in client.get("/reports?lang=vi").text


def test_the_box_list_says_online_offline_and_playing(client: TestClient, central: Central) -> None:
    now = datetime.now(UTC)
    with central.engine.begin() as conn:
        conn.execute(
            db.devices.update()
            .where(db.devices.c.id == "xa-a-01")
            .values(
                online=True, last_seen=now, state={"playing": {"source": "item", "item_id": "ban-tin-sang"}}
            )
        )
        conn.execute(
            db.devices.update().where(db.devices.c.id == "xa-a-02").values(online=True, last_seen=now)
        )
        conn.execute(
            db.devices.update()
            .where(db.devices.c.id == "xa-b-01")
            .values(online=True, last_seen=now - timedelta(hours=1))
        )  # said online, silent since: offline
    sign_in(client, "op-tinh")
    page = client.get("/boxes").text
    rows = dict(re.findall(r'<tr data-box="([^"]+)">.*?class="badge (\w+)"', page, re.S))
    assert rows == {"xa-a-01": "playing", "xa-a-02": "online", "xa-b-01": "offline"}
    assert "ban-tin-sang" in page and now.astimezone(BOX_ZONE).strftime("%d/%m/%Y %H:%M") in page
    client.cookies.clear()
    sign_in(client, "op-a")
    assert "xa-b-01" not in client.get("/boxes").text
    assert client.get("/boxes/xa-b-01").status_code == 404


def test_a_box_page_shows_its_play_log_and_alarms(
    client: TestClient, central: Central, tmp_path: Path
) -> None:
    sha = upload(client, api_login(client), tone_file(tmp_path, 440, 1.0)).json()["sha256"]
    start = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)
    alarm = {"v": 1, "id": "xa-a-01:7", "at": "2099-03-10T00:00:01.000Z",
             "data": {"kind": "relay.fault", "severity": "error", "detail": {"zone": "zone-2"}}}  # fmt: skip
    ingest(central, playlog("xa-a-01", 1, start, "missed", audio=sha, reason="the clock was not trusted"),
           Incoming("loa/v1/xa-a-01/events", json.dumps(alarm).encode()))  # fmt: skip
    sign_in(client)
    page = client.get("/boxes/xa-a-01").text
    assert "bỏ lỡ" in page and "the clock was not trusted" in page and "10/03/2099 06:00:00" in page
    assert 'class="sev-error"' in page and "relay.fault" in page


def test_a_bulletin_made_on_the_page_is_the_apis_bulletin(client: TestClient, central: Central,
                                                          tmp_path: Path) -> None:  # fmt: skip
    token = sign_in(client, "op-a")
    form = client.get("/bulletins/new").text
    assert "Xã A" in form and "xa-a-01" in form and "xa-b-01" not in form  # only what op-a reaches
    with tone_file(tmp_path, 440, 1.0).open("rb") as audio:
        answer = client.post("/bulletins/new", data={
            "csrf": token, "title": "Bản tin sáng", "source": "upload", "level": "priority",
            "target_kind": "units", "units": ["xa-a"], "timing": "recurring",
            "rrule_preset": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "dtstart": "2099-01-01T06:30", "volume": "70",
        }, files={"file": ("sang.wav", audio, "audio/wav")})  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"].startswith("/schedule?created=")
    with central.engine.connect() as conn:
        row = conn.execute(select(db.bulletins)).one()
        targets = conn.execute(select(db.bulletin_targets.c.device_id, db.bulletin_targets.c.status)).all()
    assert (row.title, row.level, row.rrule, row.dtstart, row.volume, row.created_by) == (
        "Bản tin sáng",
        "priority",
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        "2099-01-01 06:30",
        70,
        "op-a",
    )
    assert sorted(targets) == [("xa-a-01", "scheduled"), ("xa-a-02", "scheduled")]
    assert central.audio.path_of(row.audio_sha256) is not None
    schedule = client.get(answer.headers["location"]).text
    assert "Đã tạo bản tin" in schedule and "Bản tin sáng" in schedule and "Ưu tiên" in schedule


def test_the_page_says_why_a_bulletin_is_refused_and_keeps_the_form(
    client: TestClient, central: Central
) -> None:
    token = sign_in(client, "op-a")
    answer = client.post(
        "/bulletins/new",
        data={
            "csrf": token,
            "title": "Tin xã B",
            "source": "text",
            "text": "Xin chào",
            "level": "priority",
            "target_kind": "devices",
            "devices": ["xa-b-01"],
            "timing": "once",
            "at": "2099-01-01T06:00",
        },
    )
    assert answer.status_code == 422
    assert "op-a may send bulletins to only the boxes of Xã A; not xa-b-01" in answer.text
    assert 'value="Tin xã B"' in answer.text and ">Xin chào</textarea>" in answer.text
    minutely = client.post("/bulletins/new", data={
        "csrf": token, "title": "x", "source": "text", "text": "Xin chào", "level": "normal",
        "target_kind": "units", "units": ["xa-a"], "timing": "recurring", "rrule_preset": "custom",
        "rrule_custom": "FREQ=MINUTELY", "dtstart": "2099-01-01T06:00"})  # fmt: skip
    assert minutely.status_code == 422 and "rrule" in minutely.text
    with central.engine.connect() as conn:
        assert conn.execute(select(db.bulletins)).all() == []


def test_a_commune_accepts_or_declines_what_the_province_offers(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-tinh")
    offered = client.post("/bulletins/new", data={
        "csrf": token, "title": "Tin của tỉnh", "source": "text", "text": "Thông báo của tỉnh",
        "level": "normal", "target_kind": "units", "units": ["tinh"], "timing": "once",
        "at": "2099-02-01T07:00"})  # fmt: skip
    assert offered.status_code == 303, offered.text
    client.cookies.clear()
    token = sign_in(client, "op-a")
    page = client.get("/schedule").text
    assert "Cấp trên đề xuất" in page and "Tin của tỉnh" in page and "Nhận và lên lịch" in page
    [bulletin_id] = re.findall(r'<div class="offer" data-bulletin="(\d+)"', page)
    accepted = client.post(f"/schedule/{bulletin_id}/accept", data={"csrf": token, "unit": "xa-a"})
    assert accepted.status_code == 303
    with central.engine.connect() as conn:
        statuses = dict(
            conn.execute(select(db.bulletin_targets.c.device_id, db.bulletin_targets.c.status)).all()
        )
    assert statuses == {"xa-a-01": "scheduled", "xa-a-02": "scheduled", "xa-b-01": "offered"}
    assert "Không có bản tin nào chờ quyết định." in client.get("/schedule").text
    assert client.get("/api/v1/devices/xa-a-01/manifest").status_code == 200


def test_the_report_page_and_its_csv(client: TestClient, central: Central, tmp_path: Path) -> None:
    sha = upload(client, api_login(client), tone_file(tmp_path, 440, 60.0)).json()["sha256"]
    start = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)
    ingest(central, playlog("xa-a-01", 1, start, "completed", audio=sha, played_s=60.0),
           playlog("xa-b-01", 1, start, "interrupted", audio=sha, played_s=30.0))  # fmt: skip
    sign_in(client)
    page = client.get("/reports?start=2099-03-01&end=2099-03-31&group_by=commune").text
    rows = re.findall(
        r'<tr data-unit="([^"]*)"><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>', page
    )
    assert rows == [("xa-a", "Xã A", "2", "1", "1"), ("xa-b", "Xã B", "1", "1", "0")]
    assert "100.0 %" in page and "50.0 %" in page
    link = re.search(r'id="csv" href="([^"]+)"', page)
    assert link is not None
    download = client.get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and download.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"), newline="")))
    assert table[0][:3] == ["Mã đơn vị", "Tên đơn vị", "Cấp"] and table[1][:2] == ["xa-a", "Xã A"]
    bad = client.get("/reports?start=2099-03-31&end=2099-03-01")
    assert bad.status_code == 200 and "before from" in bad.text


def test_the_emergency_button_confirms_before_it_sends(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-a")
    form = {"csrf": token, "source": "text", "text": "Bão số 3 sắp đổ bộ, bà con vào nơi an toàn.",
            "target_kind": "units", "units": ["xa-a"], "volume": "100"}  # fmt: skip
    asked = client.post("/emergency", data=form)
    assert asked.status_code == 200 and "Xác nhận phát khẩn cấp" in asked.text
    assert "Sẽ phát ngay trên <strong>2</strong> cụm loa: Xã A." in asked.text
    assert central.publisher.sent == []  # type: ignore[attr-defined]
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', asked.text))
    assert hidden["text"] == form["text"] and hidden["units"] == "xa-a" and hidden["volume"] == "100"
    sent = client.post("/emergency/confirm", data=hidden)
    assert sent.status_code == 303 and sent.headers["location"].startswith("/commands/cmd-")
    [(topic, _token, retained)] = central.publisher.sent  # type: ignore[attr-defined]
    assert topic == "loa/v1/group/xa-a/cmd" and not retained
    status = client.get(sent.headers["location"]).text
    assert "Đã ký và gửi" in status and status.count("đang chờ phản hồi") == 2
    with central.engine.connect() as conn:
        [bulletin] = conn.execute(select(db.bulletins)).all()
    assert (bulletin.level, bulletin.text, bulletin.volume) == ("emergency", form["text"], 100)


def test_the_emergency_button_refuses_what_the_user_may_not_do(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-a")
    other = client.post("/emergency", data={"csrf": token, "source": "text", "text": "Khẩn cấp",
                                            "target_kind": "devices", "devices": ["xa-b-01"]})  # fmt: skip
    assert other.status_code == 422 and "not xa-b-01" in other.text
    unknown = client.post("/emergency", data={"csrf": token, "source": "library", "audio": "0" * 64,
                                              "target_kind": "units", "units": ["xa-a"]})  # fmt: skip
    assert unknown.status_code == 422 and "no such audio in the library" in unknown.text
    client.cookies.clear()
    token = sign_in(client, "viewer-a")
    viewer = client.post("/emergency", data={"csrf": token, "source": "text", "text": "Khẩn cấp",
                                             "target_kind": "units", "units": ["xa-a"]})  # fmt: skip
    assert viewer.status_code == 422 and "viewer-a is a viewer" in viewer.text
    assert central.publisher.sent == []  # type: ignore[attr-defined]


def test_what_operators_type_is_shown_as_text_never_as_markup(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-a")
    made = client.post("/bulletins/new", data={
        "csrf": token, "title": '<script>alert("x")</script>', "source": "text", "text": "Xin chào",
        "level": "priority", "target_kind": "units", "units": ["xa-a"], "timing": "once",
        "at": "2099-01-01T06:00"})  # fmt: skip
    assert made.status_code == 303
    page = client.get("/schedule").text
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_a_viewer_is_not_offered_what_it_may_not_do(client: TestClient) -> None:
    sign_in(client, "viewer-a")
    page = client.get("/boxes/xa-a-01").text
    assert "Phát khẩn cấp tới cụm loa này" not in page and 'href="/emergency"' not in page
    assert 'href="/bulletins/new"' not in page and 'href="/reports"' in page


def test_an_emergency_sent_by_mistake_is_stopped_from_its_page(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-a")
    form = {"csrf": token, "source": "text", "text": "Diễn tập", "target_kind": "units", "units": ["xa-a"]}
    asked = client.post("/emergency", data=form).text
    sent = client.post(
        "/emergency/confirm", data=dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', asked))
    )
    page = client.get(sent.headers["location"]).text
    assert "Dừng phát trên các cụm loa này" in page
    stopped = client.post(f"{sent.headers['location']}/stop", data={"csrf": token})
    assert stopped.status_code == 303 and stopped.headers["location"] != sent.headers["location"]
    [_, (topic, signed, retained)] = central.publisher.sent  # type: ignore[attr-defined]
    claims = verify_command(
        signed, keys=[central.key.public], device_id="xa-a-01", groups=frozenset({"xa-a"}),
        now=datetime.now(UTC), max_lifetime=timedelta(hours=24), seen=lambda _: False,
    )  # fmt: skip
    assert (topic, retained, claims.name) == ("loa/v1/group/xa-a/cmd", False, "stop")
    stop_page = client.get(stopped.headers["location"]).text
    assert "Dừng phát trên các cụm loa này" not in stop_page, "a stop is not stopped"
    client.cookies.clear()
    viewer = sign_in(client, "viewer-a")
    assert "Dừng phát" not in client.get(sent.headers["location"]).text
    refused = client.post(f"{sent.headers['location']}/stop", data={"csrf": viewer})
    assert refused.status_code == 403 and len(central.publisher.sent) == 2  # type: ignore[attr-defined]


def test_a_commune_operator_stops_a_province_emergency_on_its_own_boxes_only(
    client: TestClient, central: Central
) -> None:
    token = sign_in(client, "op-tinh")
    form = {"csrf": token, "source": "text", "text": "Diễn tập", "target_kind": "units", "units": ["tinh"]}
    asked = client.post("/emergency", data=form).text
    hidden = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', asked))
    command = client.post("/emergency/confirm", data=hidden).headers["location"]
    client.cookies.clear()
    token = sign_in(client, "op-a")
    stopped = client.post(f"{command}/stop", data={"csrf": token})
    assert stopped.status_code == 303
    stops = [(topic, retained) for topic, _token, retained in central.publisher.sent[1:]]  # type: ignore[attr-defined]
    assert stops == [("loa/v1/xa-a-01/cmd", False), ("loa/v1/xa-a-02/cmd", False)], (
        "not xa-b-01, not the province"
    )


def test_an_operator_stops_what_one_box_plays_from_its_page(client: TestClient, central: Central) -> None:
    token = sign_in(client, "op-a")
    assert "Dừng phát trên cụm loa này" in client.get("/boxes/xa-a-01").text
    stopped = client.post("/boxes/xa-a-01/stop", data={"csrf": token})
    assert stopped.status_code == 303 and stopped.headers["location"].startswith("/commands/cmd-")
    [(topic, _token, retained)] = central.publisher.sent  # type: ignore[attr-defined]
    assert (topic, retained) == ("loa/v1/xa-a-01/cmd", False)
    other = client.post("/boxes/xa-b-01/stop", data={"csrf": token})  # another commune's box
    assert other.status_code == 403 and len(central.publisher.sent) == 1  # type: ignore[attr-defined]
