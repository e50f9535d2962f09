"""The pages in a real headless Chromium (Debian's ``chromium``, driven by Playwright, never a
browser Playwright downloads) against uvicorn on a free port, with a real Mosquitto: the box list,
bulletin creation, the emergency button (a confirmation, then a signed command that a real
subscriber receives), and the report with its CSV download."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from central import db
from central.app import create_app
from central.bulletins import register_audio
from central.context import Central
from central.mqtt_link import CentralLink
from protocol.commands import verify_command
from tests.audio_fixtures import tone_file
from tests.central_harness import ADMIN_PASSWORD, BOX_ZONE, make_central
from tests.central_records import ingest, playlog
from tests.mqtt_broker import Broker, free_port, run_broker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
    pytest.mark.slow,
]


@dataclass
class Site:
    central: Central
    url: str
    broker: Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from run_broker(tmp_path)


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    link = CentralLink("127.0.0.1", broker.port, username=None, password=None, client_id="central-pages")
    link.start()
    assert link.connected.wait(10), "the central link did not connect to the test broker"
    central = make_central(tmp_path, link)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(central), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))  # fmt: skip
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, "uvicorn to start")
        yield Site(central, f"http://127.0.0.1:{port}", broker)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        link.stop()
        central.engine.dispose()


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    done = threading.Event()
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not condition():
        if datetime.now(UTC) > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        done.wait(0.05)


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Any, site: Site, user: str = "admin", **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{site.url}/boxes")
    assert "/login" in page.url  # not signed in yet: sent to the sign-in page
    page.get_by_label("Tên đăng nhập").fill(user)
    page.get_by_label("Mật khẩu").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{site.url}/boxes")
    return page


def test_the_box_list_on_a_phone(browser: Any, site: Site) -> None:
    now = datetime.now(UTC)
    with site.central.engine.begin() as conn:
        conn.execute(
            db.devices.update()
            .where(db.devices.c.id == "xa-a-01")
            .values(
                online=True, last_seen=now, state={"playing": {"source": "item", "item_id": "ban-tin-trua"}}
            )
        )
        conn.execute(
            db.devices.update().where(db.devices.c.id == "xa-b-01").values(online=True, last_seen=now)
        )
    page = signed_in(browser, site, viewport={"width": 375, "height": 740}, is_mobile=True)
    rows = page.locator("#boxes tbody tr")
    assert rows.count() == 3
    status = {rows.nth(i).get_attribute("data-box"): rows.nth(i).locator(".badge").inner_text()
              for i in range(3)}  # fmt: skip
    assert status == {"xa-a-01": "đang phát", "xa-a-02": "mất kết nối", "xa-b-01": "trực tuyến"}
    assert "ban-tin-trua" in rows.nth(0).inner_text()
    # usable on a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("link", name="xa-a-01").click()
    page.wait_for_url(f"{site.url}/boxes/xa-a-01")
    assert "Đang phát" in page.inner_text("main") and "ban-tin-trua" in page.inner_text("main")
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**lang=en")
    assert "Now playing" in page.inner_text("main")


def test_a_bulletin_created_in_the_browser(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, "op-a")
    page.get_by_role("link", name="Tạo bản tin").click()
    page.get_by_label("Tiêu đề").fill("Thông báo tiêm phòng")
    page.get_by_label("Văn bản đọc thành giọng nói").check()
    page.locator("textarea[name=text]").fill("Sáng mai, trạm y tế xã tiêm phòng cho trẻ em.")
    page.get_by_label("Mức độ").select_option("priority")
    page.get_by_label("Mọi cụm loa của các đơn vị").check()
    page.get_by_label("Xã A").check()
    page.get_by_label("Một lần, lúc").check()
    page.locator("input[name=at]").fill("2099-05-01T07:30")
    page.get_by_role("button", name="Tạo bản tin").click()
    page.wait_for_url("**/schedule?created=*")
    assert "Đã tạo bản tin" in page.inner_text("main")
    assert page.locator("#schedule tbody tr").first.inner_text().startswith("Thông báo tiêm phòng")
    with site.central.engine.connect() as conn:
        row = conn.execute(select(db.bulletins)).one()
        boxes = conn.execute(select(db.bulletin_targets.c.device_id)).scalars().all()
    spoken = "Sáng mai, trạm y tế xã tiêm phòng cho trẻ em."
    assert (row.level, row.text, row.created_by) == ("priority", spoken, "op-a")
    assert row.at == datetime(2099, 5, 1, 0, 30, tzinfo=UTC) and sorted(boxes) == ["xa-a-01", "xa-a-02"]


class Subscriber:
    """A real MQTT client subscribed to every command topic (paho, as a box's link would be)."""

    def __init__(self, broker: Broker) -> None:
        self.received: queue.Queue[tuple[str, str]] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-listener")
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, m.payload.decode()))
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_connect = lambda client, *_args: client.subscribe(
            [("loa/v1/+/cmd", 1), ("loa/v1/group/+/cmd", 1)])  # fmt: skip
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the listener did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_emergency_button_asks_then_sends_a_signed_command(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    listener = Subscriber(site.broker)
    try:
        page = signed_in(browser, site, "op-tinh")
        page.get_by_role("link", name="Khẩn cấp").click()
        page.get_by_label("Tải lên tệp âm thanh (MP3, WAV, OGG)").check()
        page.locator("input[name=file]").set_input_files(str(tone_file(tmp_path, 880, 2.0)))
        page.get_by_label("Mọi cụm loa của các đơn vị").check()
        page.get_by_label("Xã A").check()
        page.get_by_role("button", name="Phát khẩn cấp…").click()
        assert "Xác nhận phát khẩn cấp" in page.inner_text("main")
        assert "Sẽ phát ngay trên 2 cụm loa: Xã A." in page.inner_text("main")
        with site.central.engine.connect() as conn:
            assert conn.execute(select(db.commands)).all() == []  # nothing sent before the confirmation
        page.get_by_role("button", name="Đồng ý, phát khẩn cấp ngay").click()
        page.wait_for_url("**/commands/cmd-*")
        ident = page.url.rsplit("/", 1)[1]
        assert "Đã ký và gửi" in page.inner_text("main") and page.locator("#acks tbody tr").count() == 2
        topic, token = listener.received.get(timeout=10)
    finally:
        listener.close()
    assert topic == "loa/v1/group/xa-a/cmd"
    command = verify_command(token, keys=[site.central.key.public], device_id="xa-a-02",
                             groups=frozenset({"xa-a", "tinh"}), now=datetime.now(UTC),
                             max_lifetime=timedelta(hours=24), seen=lambda _: False)  # fmt: skip
    assert (command.id, command.name) == (ident, "emergency")
    with site.central.engine.connect() as conn:
        stored = conn.execute(select(db.commands)).one()
        audio = conn.execute(select(db.audio.c.sha256)).scalar_one()
    assert (stored.id, stored.type, stored.created_by) == (ident, "emergency", "op-tinh")
    assert command.fields["audio"]["sha256"] == audio


def test_the_report_and_its_csv_download(browser: Any, site: Site, tmp_path: Path) -> None:
    stored = site.central.audio.put([tone_file(tmp_path, 440, 60.0).read_bytes()], name="tin")
    register_audio(site.central.engine, stored, "tin", "admin", datetime.now(UTC))
    start = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)
    ingest(site.central, playlog("xa-b-01", 1, start, "completed", audio=stored.sha256, played_s=60.0))
    page = signed_in(browser, site, "op-tinh")
    page.get_by_role("link", name="Báo cáo").click()
    page.get_by_label("Từ ngày").fill("2099-03-01")
    page.get_by_label("Đến ngày").fill("2099-03-31")
    page.get_by_role("button", name="Xem").click()
    page.wait_for_url("**/reports?start=2099-03-01*")
    row = page.locator('#report tr[data-unit="xa-b"]')
    assert row.locator("td").nth(0).inner_text() == "Xã B" and "100.0 %" in row.inner_text()
    with page.expect_download() as waiting:
        page.get_by_role("link", name="Tải về CSV").click()
    saved = tmp_path / "report.csv"
    waiting.value.save_as(saved)
    assert waiting.value.suggested_filename == "bao-cao-phat-thanh-2099-03-01-2099-03-31-commune.csv"
    body = saved.read_bytes()
    assert body.startswith(b"\xef\xbb\xbf") and "Xã B".encode() in body and b"\r\n" in body
