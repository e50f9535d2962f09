"""Circular 39's rule for priority bulletins, through the real API and the real schedule page (TestClient
over a real SQLite file): a province's priority bulletin colliding with the commune's own is shown to
the commune, whose operator sets the order; the commune's boxes get it in their signed manifests as
the second bulletin's time following the first's end, read back by the boxes' own schedule reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import registry
from central.context import Central
from protocol.manifest import verify_manifest
from scheduler.items import parse_items
from scheduler.recurrence import expand
from tests.audio_fixtures import tone_file
from tests.central_harness import BOX_ZONE, RecordingPublisher, csrf_of, login, make_central, sign_in, upload

NOW = datetime(2099, 3, 9, 12, 0, tzinfo=BOX_ZONE)
SIX = datetime(2099, 3, 10, 6, 0, tzinfo=BOX_ZONE)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    made = make_central(tmp_path, RecordingPublisher())
    made.clock = lambda: NOW
    yield made
    made.engine.dispose()


@pytest.fixture
def sha(client: TestClient, tmp_path: Path) -> str:
    """A 60-second bulletin audio."""
    return str(upload(client, login(client), tone_file(tmp_path, 440, 60.0)).json()["sha256"])


def bulletin(client: TestClient, user: str, sha: str, targets: dict[str, list[str]], **timing: str) -> int:
    body = {"title": f"Tin của {user}", "audio_sha256": sha, "level": "priority", "targets": targets}
    answer = client.post("/api/v1/bulletins", headers=login(client, user), json=body | timing)
    assert answer.status_code == 201, answer.text
    assert "scheduled" in answer.json()["targets"].values()
    return int(answer.json()["id"])


def starts(client: TestClient, central: Central, device: str) -> dict[str, datetime]:
    """Each item's first start as the box reads its signed manifest."""
    answer = client.get(f"/api/v1/devices/{device}/manifest")
    assert answer.status_code == 200
    manifest = verify_manifest(answer.text, keys=[central.key.public], device_id=device,
                               groups=frozenset(["xa-a", "tinh"]), now=NOW, current_version=None)  # fmt: skip
    items, findings = parse_items({"items": list(manifest.items)}, BOX_ZONE)
    assert not findings
    return {occ.item.id: occ.start for occ in expand(items, BOX_ZONE, NOW, NOW + timedelta(days=2))}


def collisions(client: TestClient, user: str = "op-a") -> list[dict[str, Any]]:
    answer = client.get("/api/v1/collisions", headers=login(client, user))
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_the_commune_operator_sets_the_order_and_the_boxes_get_it(
    client: TestClient, central: Central, sha: str
) -> None:
    province = bulletin(client, "op-tinh", sha, {"communes": ["xa-a"]}, at=SIX.isoformat())
    own = bulletin(
        client, "op-a", sha, {"devices": ["xa-a-01"]}, at=(SIX + timedelta(seconds=30)).isoformat()
    )
    [hit] = collisions(client)
    assert (hit["unit"], hit["own"], hit["other"], hit["devices"], hit["first"]) == (
        "xa-a", own, province, ["xa-a-01"], None)  # fmt: skip
    assert datetime.fromisoformat(hit["at"]) == SIX + timedelta(seconds=30)
    assert [entry["created_by"] for entry in hit["bulletins"]] == ["op-a", "op-tinh"]
    assert collisions(client, "op-tinh") == [hit]  # the province sees it too, but may not decide
    refused = client.post("/api/v1/collisions/order", headers=login(client, "op-tinh"),
                          json={"unit": "xa-a", "first": province, "then": own})  # fmt: skip
    assert refused.status_code == 403 and "only the operator of Xã A" in refused.json()["detail"]

    ordered = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                          json={"unit": "xa-a", "first": own, "then": province})  # fmt: skip
    assert ordered.status_code == 200, ordered.text
    assert ordered.json()["shift_s"] == 90 and ordered.json()["manifests"] == {"xa-a-01": 3}
    # the commune's bulletin keeps its time; the province's follows its end, on the box that has both
    on_box = starts(client, central, "xa-a-01")
    assert on_box == {f"bulletin-{own}": SIX + timedelta(seconds=30),
                      f"bulletin-{province}": SIX + timedelta(seconds=90)}  # fmt: skip
    assert starts(client, central, "xa-a-02") == {f"bulletin-{province}": SIX}
    [hit] = collisions(client)
    assert (hit["first"], hit["then"], hit["shift_s"]) == (own, province, 90)
    [audit] = [row for row in registry.audit_log(central.engine) if row["action"] == "bulletin.order"]
    assert audit["user"] == "op-a" and audit["detail"]["first"] == own

    # changed mind: the province's first; the commune's now follows it
    again = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                        json={"unit": "xa-a", "first": province, "then": own})  # fmt: skip
    assert again.status_code == 200 and again.json()["shift_s"] == 30
    assert starts(client, central, "xa-a-01") == {f"bulletin-{province}": SIX,
                                                  f"bulletin-{own}": SIX + timedelta(seconds=60)}  # fmt: skip


def test_what_does_not_collide_cannot_be_ordered_and_a_daily_one_cannot_follow_a_single_one(
    client: TestClient, central: Central, sha: str
) -> None:
    daily = bulletin(client, "op-tinh", sha, {"communes": ["xa-a"]}, rrule="FREQ=DAILY",
                     dtstart="2099-03-10 06:00")  # fmt: skip
    once = bulletin(client, "op-a", sha, {"communes": ["xa-a"]}, at=(SIX + timedelta(seconds=20)).isoformat())
    apart = bulletin(client, "op-a", sha, {"communes": ["xa-a"]}, at=(SIX + timedelta(hours=2)).isoformat())
    assert [(hit["own"], hit["other"]) for hit in collisions(client)] == [(once, daily)]
    refused = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                          json={"unit": "xa-a", "first": once, "then": daily})  # fmt: skip
    assert refused.status_code == 422 and "change one of their times" in refused.json()["detail"][0]
    apart_refused = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                                json={"unit": "xa-a", "first": apart, "then": daily})  # fmt: skip
    assert apart_refused.status_code == 422 and "do not collide" in apart_refused.json()["detail"][0]
    # the other way round is fine: the single one follows the daily one's end, that day
    fine = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                       json={"unit": "xa-a", "first": daily, "then": once})  # fmt: skip
    assert fine.status_code == 200 and fine.json()["shift_s"] == 40


def test_the_schedule_page_shows_a_collision_and_lets_the_commune_choose(
    client: TestClient, central: Central, sha: str
) -> None:
    province = bulletin(client, "op-tinh", sha, {"communes": ["xa-a"]}, at=SIX.isoformat())
    own = bulletin(client, "op-a", sha, {"communes": ["xa-a"]}, at=(SIX + timedelta(seconds=30)).isoformat())
    sign_in(client, "op-a")
    page = client.get("/schedule").text
    assert "Bản tin ưu tiên trùng giờ" in page and f'data-own="{own}" data-other="{province}"' in page
    assert "10/03/2099 06:00:30" in page and "Chưa chọn thứ tự" in page
    chosen = client.post("/schedule/order", data={"csrf": csrf_of(page), "unit": "xa-a", "first": province,
                                                  "then": own})  # fmt: skip
    assert chosen.status_code == 303 and chosen.headers["location"] == "/schedule?unit=xa-a"
    page = client.get(chosen.headers["location"]).text
    assert f'data-first="{province}"' in page and "+30 s" in page
    assert starts(client, central, "xa-a-02")[f"bulletin-{own}"] == SIX + timedelta(seconds=60)
    client.cookies.clear()
    sign_in(client, "op-tinh")
    page = client.get("/schedule?unit=xa-a").text
    refused = client.post("/schedule/order", data={"csrf": csrf_of(page), "unit": "xa-a", "first": own,
                                                   "then": province})  # fmt: skip
    assert refused.status_code == 403 and "only the operator of Xã A" in refused.text


def test_two_daily_bulletins_keep_their_order_every_day(
    client: TestClient, central: Central, sha: str
) -> None:
    province = bulletin(client, "op-tinh", sha, {"communes": ["xa-a"]}, rrule="FREQ=DAILY",
                        dtstart="2099-03-10 06:00")  # fmt: skip
    own = bulletin(client, "op-a", sha, {"communes": ["xa-a"]}, rrule="FREQ=DAILY",
                   dtstart="2099-03-10 06:00:20")  # fmt: skip
    ordered = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                          json={"unit": "xa-a", "first": own, "then": province})  # fmt: skip
    assert ordered.status_code == 200 and ordered.json()["shift_s"] == 80
    answer = client.get("/api/v1/devices/xa-a-02/manifest")
    manifest = verify_manifest(answer.text, keys=[central.key.public], device_id="xa-a-02",
                               groups=frozenset(["xa-a", "tinh"]), now=NOW, current_version=None)  # fmt: skip
    items, _findings = parse_items({"items": list(manifest.items)}, BOX_ZONE)
    week = expand(items, BOX_ZONE, NOW, NOW + timedelta(days=7))
    assert [(occ.item.id, occ.start.astimezone(BOX_ZONE).time().isoformat()) for occ in week[:4]] == [
        (f"bulletin-{own}", "06:00:20"), (f"bulletin-{province}", "06:01:20")] * 2  # fmt: skip
    assert len(week) == 14


def test_a_bulletin_moved_to_follow_another_that_lands_on_a_third_is_a_collision_in_turn(
    client: TestClient, central: Central, sha: str
) -> None:
    """Each audio lasts 60 s.  The commune's own at 06:00 collides with the province's at 06:00:30;
    the province's goes first, so the commune's moves to 06:01:30, onto another province
    bulletin at 06:01:40, which it did not touch where it was sent: that is shown, and the order set
    for it starts from where the commune's bulletin now is."""
    own = bulletin(client, "op-a", sha, {"devices": ["xa-a-01"]}, at=SIX.isoformat())
    first = bulletin(
        client, "op-tinh", sha, {"communes": ["xa-a"]}, at=(SIX + timedelta(seconds=30)).isoformat()
    )
    third = bulletin(
        client, "op-tinh", sha, {"communes": ["xa-a"]}, at=(SIX + timedelta(seconds=100)).isoformat()
    )
    assert [(hit["own"], hit["other"]) for hit in collisions(client)] == [(own, first)]
    ordered = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                          json={"unit": "xa-a", "first": first, "then": own})  # fmt: skip
    assert ordered.status_code == 200 and ordered.json()["shift_s"] == 90
    hits = {(hit["own"], hit["other"]): hit for hit in collisions(client)}
    assert set(hits) == {(own, first), (own, third)}
    assert hits[(own, first)]["first"] == first and hits[(own, third)]["first"] is None
    assert datetime.fromisoformat(hits[(own, third)]["at"]) == SIX + timedelta(seconds=100)
    # the commune keeps its bulletin where it now is, and the third follows it from there
    then = client.post("/api/v1/collisions/order", headers=login(client, "op-a"),
                       json={"unit": "xa-a", "first": own, "then": third})  # fmt: skip
    assert then.status_code == 200, then.text
    assert then.json()["shift_s"] == 50
    assert starts(client, central, "xa-a-01") == {
        f"bulletin-{first}": SIX + timedelta(seconds=30),
        f"bulletin-{own}": SIX + timedelta(seconds=90),
        f"bulletin-{third}": SIX + timedelta(seconds=150),
    }
    assert all(hit["first"] is not None for hit in collisions(client)), "nothing left to order"
