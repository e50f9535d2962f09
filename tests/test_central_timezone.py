"""``devices.timezone`` is the one zone the central reads and shows the boxes' wall clock in: a page
shows times in it, a form's time is read in it, and a report's days begin and end at its midnight.
A zone far from the default (New York, UTC-4 in March 2099) makes each place that forgot it fail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central import db
from central.context import Central
from tests.audio_fixtures import tone_file
from tests.central_harness import RecordingPublisher, login, make_central, sign_in, upload
from tests.central_records import ingest, playlog

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    made = make_central(tmp_path, RecordingPublisher(), extra="devices: {timezone: America/New_York}\n")
    yield made
    made.engine.dispose()


def test_a_page_shows_times_on_the_configured_zones_wall_clock(
    client: TestClient, central: Central, tmp_path: Path
) -> None:
    assert central.config.box_timezone.key == "America/New_York"
    sha = upload(client, login(client), tone_file(tmp_path, 440, 1.0)).json()["sha256"]
    start = datetime(2099, 3, 10, 23, 30, tzinfo=NEW_YORK)  # 11 March 03:30 UTC, 10:30 in Hanoi
    ingest(central, playlog("xa-a-01", 1, start, "completed", audio=sha, played_s=1.0))
    sign_in(client)
    page = client.get("/boxes/xa-a-01").text
    assert "10/03/2099 23:30:00" in page and "11/03/2099 10:30:00" not in page


def test_a_forms_time_is_read_in_the_configured_zone(client: TestClient, central: Central) -> None:
    token = sign_in(client)
    answer = client.post("/bulletins/new", data={
        "csrf": token, "title": "Tin tối", "source": "text", "text": "Xin chào", "level": "priority",
        "target_kind": "devices", "devices": ["xa-a-01"], "timing": "once",
        "at": "2099-03-10T23:30"})  # fmt: skip
    assert answer.status_code == 303, answer.text
    with central.engine.connect() as conn:
        at = conn.execute(select(db.bulletins.c.at)).scalar_one()
    assert at == datetime(2099, 3, 11, 3, 30, tzinfo=ZoneInfo("UTC"))


def test_a_reports_days_begin_at_midnight_in_the_configured_zone(
    client: TestClient, central: Central, tmp_path: Path
) -> None:
    sha = upload(client, login(client), tone_file(tmp_path, 440, 60.0)).json()["sha256"]
    late = datetime(2099, 3, 10, 23, 30, tzinfo=NEW_YORK)  # in Hanoi, already 11 March
    early = datetime(2099, 3, 11, 0, 30, tzinfo=NEW_YORK)
    ingest(central, playlog("xa-a-01", 1, late, "completed", audio=sha, played_s=60.0),
           playlog("xa-a-01", 2, early, "completed", audio=sha, played_s=60.0,
                   item="bulletin-2"))  # fmt: skip

    def completed(day: str) -> int:
        answer = client.get("/api/v1/reports/broadcasts", headers=login(client),
                            params={"from": day, "to": day, "group_by": "commune"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return sum(int(row["completed"]) for row in answer.json()["units"])

    assert (completed("2099-03-10"), completed("2099-03-11")) == (1, 1)
    # a daily bulletin at 23:30 on the boxes' clock, never reported: one unreported occurrence a day
    made = client.post("/api/v1/bulletins", headers=login(client), json={
        "title": "Bản tin tối", "audio_sha256": sha, "level": "priority", "targets": {"devices": ["xa-a-02"]},
        "rrule": "FREQ=DAILY", "dtstart": "2099-03-09 23:30"})  # fmt: skip
    assert made.status_code == 201, made.text
    central.clock = lambda: datetime(2099, 3, 12, 12, 0, tzinfo=NEW_YORK)
    answer = client.get("/api/v1/reports/broadcasts", headers=login(client),
                        params={"from": "2099-03-10", "to": "2099-03-10"})  # fmt: skip
    [row] = [row for row in answer.json()["units"] if row["unit"] == "xa-a"]
    assert row["unreported"] == 1  # 10 March 23:30 New York; in Hanoi's days it would fall on the 11th
    # the reports page's default period ends today on the boxes' clock (12 March there, as here)
    sign_in(client)
    assert 'value="2099-03-12"' in client.get("/reports").text
