"""Upstream: RSS 2.0 and Atom feeds with audio enclosures, served by a real local HTTP server, imported
into the audio library by ``loa-central feeds pull``; and what an upstream system's read-only account
reads (the registry, the library, the reports) and may not do."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central import cli, db, upstream
from central.app import create_app
from central.context import Central
from tests.audio_fixtures import tone_file
from tests.central_harness import ADMIN_PASSWORD, RecordingPublisher, login, make_central, sign_in
from tests.http_stand_in import serving


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def newsroom(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server publishing the files of a directory; (its base URL, the directory)."""
    site = tmp_path / "newsroom"
    site.mkdir()
    with serving(functools.partial(Quiet, directory=str(site))) as base:
        yield base, site


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    (tmp_path / "central").mkdir()
    made = make_central(tmp_path / "central", RecordingPublisher())
    yield made
    made.engine.dispose()


def loa_central(central: Central, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main([f"--config={central.config.source}", *args])
    return code, capsys.readouterr().out


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Đài Phát thanh tỉnh</title>
<item><title>Bản tin thời sự sáng</title><guid>tin-sang-0310</guid>
  <pubDate>Tue, 10 Mar 2099 06:00:00 +0700</pubDate>
  <enclosure url="audio/thoi-su.wav" type="audio/wav" length="1"/></item>
<item><title>Chỉ có chữ, không có âm thanh</title><guid>chu</guid></item>
<item><title>Tệp hỏng</title><guid>hong</guid>
  <enclosure url="{base}/audio/hong.mp3" type="audio/mpeg"/></item>
<item><title>Ảnh</title><guid>anh</guid><enclosure url="{base}/anh.jpg" type="image/jpeg"/></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Bộ Thông tin</title><id>urn:bo</id>
<entry><title>Chương trình nông nghiệp</title><id>urn:bo:nong-nghiep-1</id>
  <updated>2099-03-10T00:00:00Z</updated>
  <link rel="alternate" href="{base}/nong-nghiep.html"/>
  <link rel="enclosure" href="{base}/audio/nong-nghiep.ogg" type="audio/ogg"/></entry>
</feed>"""


def publish(site: Path, base: str) -> None:
    (site / "audio").mkdir()
    (site / "audio" / "thoi-su.wav").write_bytes(tone_file(site, 440, 1.5).read_bytes())
    (site / "audio" / "hong.mp3").write_bytes(b"this is not an mp3 at all" * 40)
    wav = tone_file(site, 660, 2.0)
    subprocess.run(["sox", str(wav), str(site / "audio" / "nong-nghiep.ogg")], check=True, timeout=60)
    (site / "rss.xml").write_text(RSS.format(base=base), encoding="utf-8")
    (site / "atom.xml").write_text(ATOM.format(base=base), encoding="utf-8")


def test_feeds_bring_their_audio_into_the_library_once(
    central: Central, newsroom: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, site = newsroom
    publish(site, base)
    for feed in ("rss.xml", "atom.xml"):
        assert loa_central(central, "feeds", "add", f"{base}/{feed}", capsys=capsys)[0] == 0
    code, out = loa_central(central, "feeds", "pull", capsys=capsys)
    assert code == 1  # one enclosure was refused: said, and tried again next time
    assert f"{base}/rss.xml: 1 imported, 0 already there, 1 refused" in out
    assert "not imported: Tệp hỏng:" in out and "not MP3, WAV or OGG" in out
    assert f"{base}/atom.xml: 1 imported, 0 already there, 0 refused" in out
    with central.engine.connect() as conn:
        library = {row.name: row for row in conn.execute(select(db.audio))}
    assert sorted(library) == ["Bản tin thời sự sáng", "Chương trình nông nghiệp"]
    assert library["Bản tin thời sự sáng"].mime == "audio/wav"
    assert library["Chương trình nông nghiệp"].mime == "audio/ogg"
    assert library["Chương trình nông nghiệp"].duration_s == pytest.approx(2.0, abs=0.05)
    for row in library.values():
        assert central.audio.path_of(row.sha256) is not None
    again = loa_central(central, "feeds", "pull", f"{base}/atom.xml", capsys=capsys)
    assert again == (0, f"{base}/atom.xml: 0 imported, 1 already there, 0 refused\n")
    items = {item["guid"]: item for item in upstream.imported(central.engine)}
    assert items["tin-sang-0310"]["published"].isoformat() == "2099-03-09T23:00:00+00:00"
    assert items["hong"]["audio_sha256"] is None and "not MP3" in items["hong"]["error"]
    assert set(items) == {"tin-sang-0310", "hong", "urn:bo:nong-nghiep-1"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
         "<rss><channel><item><title>&b;</title></item></channel></rss>",
         "refused: it declares a DTD or entities"),
        ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rss>&x;</rss>',
         "refused: it declares a DTD or entities"),
        ("<html><body>404</body></html>", "expected RSS 2.0 (<rss>) or Atom (<feed>), found <html>"),
        ("<rss><channel><item>", "not well-formed XML"),
    ],
)  # fmt: skip
def test_a_hostile_or_broken_feed_is_refused_and_stores_nothing(
    central: Central, newsroom: tuple[str, Path], capsys: pytest.CaptureFixture[str], body: str, reason: str
) -> None:
    base, site = newsroom
    (site / "feed.xml").write_text(body, encoding="utf-8")
    loa_central(central, "feeds", "add", f"{base}/feed.xml", capsys=capsys)
    code, out = loa_central(central, "feeds", "pull", capsys=capsys)
    assert code == 1 and f"feed {base}/feed.xml: {reason}" in out
    listing = loa_central(central, "feeds", "list", capsys=capsys)[1]
    assert f"failed: feed {base}/feed.xml: {reason}" in listing
    with central.engine.connect() as conn:
        assert conn.execute(select(db.audio)).all() == []


def test_an_unreachable_feed_is_named_with_why(central: Central, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.mqtt_broker import free_port

    url = f"http://127.0.0.1:{free_port()}/rss.xml"
    assert loa_central(central, "feeds", "add", "ftp://example.org/x", capsys=capsys)[0] == 2
    code, out = loa_central(central, "feeds", "pull", url, capsys=capsys)
    assert code == 1 and f"feed {url}: cannot fetch (ConnectionError" in out


def test_an_upstream_system_reads_with_its_own_account_and_changes_nothing(
    central: Central, newsroom: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, site = newsroom
    publish(site, base)
    loa_central(central, "feeds", "pull", f"{base}/atom.xml", capsys=capsys)
    password = tmp_path / "pw"
    password.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    assert loa_central(central, "user", "add", "bo-ttt", "--role", "upstream", "--password-file",
                       str(password), capsys=capsys)[0] == 0  # fmt: skip
    with TestClient(create_app(central)) as client:
        # its token as an upstream system gets one: the API's login (or a long-lived `token add`)
        headers = login(client, "bo-ttt")
        assert [box["id"] for box in client.get("/api/v1/devices", headers=headers).json()] == [
            "xa-a-01", "xa-a-02", "xa-b-01"]  # fmt: skip
        units = {unit["id"]: unit for unit in client.get("/api/v1/units", headers=headers).json()}
        assert units["xa-a"] == {"id": "xa-a", "name": "Xã A", "level": "commune", "parent": "tinh",
                                 "path": ["tinh", "xa-a"], "boxes": 2}  # fmt: skip
        [programme] = client.get("/api/v1/library", headers=headers).json()
        assert programme["name"] == "Chương trình nông nghiệp" and programme["feed"] == f"{base}/atom.xml"
        period = {"from": "2099-03-01", "to": "2099-03-31", "group_by": "province"}
        report = client.get("/api/v1/reports/broadcasts", headers=headers, params=period)
        assert report.status_code == 200 and report.json()["units"][0]["boxes"] == 3
        bulletin = client.post("/api/v1/bulletins", headers=headers, json={
            "title": "x", "audio_sha256": programme["sha256"], "level": "priority",
            "targets": {"units": ["tinh"]}, "at": "2099-01-01T06:00:00+07:00"})  # fmt: skip
        assert bulletin.status_code == 403 and "bo-ttt is a upstream" in bulletin.json()["detail"]
        command = client.post("/api/v1/commands", headers=headers,
                              json={"type": "stop", "targets": {"units": ["tinh"]}})  # fmt: skip
        assert command.status_code == 403
        # operators schedule an imported programme like their own audio
        operator = client.post("/api/v1/bulletins", headers=login(client, "op-a"), json={
            "title": "Nông nghiệp", "audio_sha256": programme["sha256"], "level": "priority",
            "targets": {"units": ["xa-a"]}, "at": "2099-01-01T06:00:00+07:00"})  # fmt: skip
        assert operator.status_code == 201, json.dumps(operator.json())


def test_operators_find_imported_programmes_in_the_library_page(
    central: Central, newsroom: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, site = newsroom
    publish(site, base)
    loa_central(central, "feeds", "add", f"{base}/atom.xml", "--name", "Bộ Thông tin", capsys=capsys)
    assert loa_central(central, "feeds", "pull", capsys=capsys)[0] == 0
    with TestClient(create_app(central), follow_redirects=False) as client:
        sign_in(client, "op-a")
        page = client.get("/library").text
        [sha] = re.findall(
            r'<tr data-audio="([0-9a-f]{64})"><td>Chương trình nông nghiệp</td><td>0:02</td>', page
        )
        assert "Bộ Thông tin" in page and f'href="/bulletins/new?audio={sha}"' in page
        form = client.get(f"/bulletins/new?audio={sha}").text
        assert f'<option value="{sha}" selected>Chương trình nông nghiệp' in form
        assert re.search(r'value="library" checked', form)
