"""Schedule item validation and recurrence expansion, with explicit values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml

from foundation.errors import ScheduleError
from scheduler.items import Item, Level, parse_items
from scheduler.recurrence import Occurrence, expand, first_start

VN = ZoneInfo("Asia/Ho_Chi_Minh")
PLUS7 = timezone(timedelta(hours=7))
ZONES = frozenset({"zone-1", "zone-2"})

GOOD_YAML = """
items:
  - id: morning-news
    audio: ban-tin-sang.mp3
    rrule: FREQ=DAILY;BYHOUR=6;BYMINUTE=30
    dtstart: 2025-03-01 06:30
    valid_until: 2025-03-31
    zones: [zone-1]
    volume: 80
  - id: storm-warning
    audio: bao-so-3.mp3
    priority: emergency
    at: 2025-03-02T17:00:00+07:00
  - id: vaccination
    audio: tiem-chung.mp3
    priority: priority
    rrule: RRULE:FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=17
    dtstart: 2025-03-01T00:00:00+07:00
    valid_from: 2025-03-03T00:00:00+07:00
"""


def only(raw: object, **kwargs: object) -> list[tuple[str, object, str, str | None]]:
    items, findings = parse_items(raw, VN, **kwargs)  # type: ignore[arg-type]
    assert not items
    return [(f.path_text, f.value, f.expected, f.hint) for f in findings]


def item(**fields: object) -> dict[str, object]:
    return {"id": "x", "audio": "x.mp3", "at": "2025-03-01T06:00:00+07:00", **fields}


def test_good_yaml_parses_every_field() -> None:
    items, findings = parse_items(yaml.safe_load(GOOD_YAML), VN, ZONES)
    assert findings == []
    news, storm, vacc = items
    assert news.zones == frozenset({"zone-1"}) and news.volume == 80 and news.level is Level.NORMAL
    assert news.dtstart == datetime(2025, 3, 1, 6, 30)
    assert news.valid_until == datetime(2025, 4, 1, tzinfo=VN)  # a date includes the whole day
    assert storm.level is Level.EMERGENCY and storm.at == datetime(2025, 3, 2, 17, tzinfo=PLUS7)
    assert storm.zones is None
    assert vacc.level is Level.PRIORITY and vacc.valid_from == datetime(2025, 3, 3, tzinfo=PLUS7)


def test_unknown_key_gets_did_you_mean() -> None:
    [finding] = only({"items": [item(zone=["zone-1"])]})
    assert finding[0] == "items[0].zone" and finding[3] == "did you mean 'zones'?"


def test_unknown_top_level_key_and_missing_items() -> None:
    findings = only({"itemz": []})
    assert ("itemz", "itemz", "a known key", "did you mean 'items'?") in findings
    assert findings[-1][0] == "items"


def test_missing_id_and_audio_are_both_reported() -> None:
    findings = only({"items": [{"at": "2025-03-01T06:00:00+07:00"}]})
    assert [f[0] for f in findings] == ["items[0].id", "items[0].audio"]


def test_duplicate_id_names_the_first_use() -> None:
    items, findings = parse_items({"items": [item(), item(audio="other.mp3")]}, VN)
    assert [i.audio for i in items] == ["x.mp3"]
    assert [(f.path_text, f.hint) for f in findings] == [("items[1].id", "first used by items[0]")]


def test_numeric_id_asks_for_quotes() -> None:
    [finding] = only({"items": [item(id=7)]})
    assert finding[3] == "quote it: id: '7'"


@pytest.mark.parametrize("fields", [{"rrule": "FREQ=DAILY", "dtstart": "2025-03-01"}, {"at": None}])
def test_both_or_neither_of_at_and_rrule(fields: dict[str, object]) -> None:
    entry = item(**fields)
    if fields.get("at", "") is None:
        del entry["at"]
    findings = only({"items": [entry]})
    assert findings[0][0] == "items[0]" and "exactly one of 'at'" in findings[0][2]


def test_at_without_offset_suggests_local_offset() -> None:
    [finding] = only({"items": [item(at=datetime(2025, 3, 1, 6, 0))]})
    assert finding[0] == "items[0].at"
    assert finding[3] == "add the UTC offset, e.g. 2025-03-01T06:00+07:00"


def test_date_is_not_an_instant_for_at() -> None:
    [finding] = only({"items": [item(at=date(2025, 3, 1))]})
    assert finding[0] == "items[0].at"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("FREQ=MINUTELY;BYSECOND=0", "FREQ of HOURLY or slower"),
        ("FREQ=SECONDLY", "FREQ of HOURLY or slower"),
        ("FREQ=DAILY;BYHOUR=25", "a valid RFC 5545 recurrence rule"),
        ("FREQ=FORTNIGHTLY", "a valid RFC 5545 recurrence rule"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20250310T000000", "COUNT or UNTIL, not both"),
        ("FREQ=DAILY;UNTIL=20250310T000000Z", "UNTIL in device local time (no Z)"),
        (
            "DTSTART:20250301T060000\nRRULE:FREQ=DAILY",
            "a single RRULE line, e.g. FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
        ),
    ],
)
def test_bad_rules(rule: str, expected: str) -> None:
    entry = {"id": "r", "audio": "r.mp3", "rrule": rule, "dtstart": "2025-03-01 06:00"}
    [finding] = only({"items": [entry]})
    assert finding[0] == "items[0].rrule" and finding[2] == expected


def test_rule_needs_dtstart() -> None:
    [finding] = only({"items": [{"id": "r", "audio": "r.mp3", "rrule": "FREQ=DAILY"}]})
    assert finding[0] == "items[0].dtstart"


def test_unknown_level_gets_did_you_mean() -> None:
    [finding] = only({"items": [item(priority="emergancy")]})
    assert finding[0] == "items[0].priority" and finding[3] == "did you mean 'emergency'?"


@pytest.mark.parametrize("volume", [-1, 101, 50.5, True, "80"])
def test_volume_range(volume: object) -> None:
    [finding] = only({"items": [item(volume=volume)]})
    assert finding[0] == "items[0].volume"


def test_validity_order_and_naive_validity() -> None:
    findings = only({"items": [item(valid_from="2025-03-05", valid_until="2025-03-04")]})
    assert [f[0] for f in findings] == ["items[0].valid_until"]
    findings = only({"items": [item(valid_from="2025-03-05 06:00")]})
    assert [f[0] for f in findings] == ["items[0].valid_from"]


def test_unknown_zones_with_did_you_mean_and_empty_list() -> None:
    [finding] = only({"items": [item(zones=["zone-3", "zone-1"])]}, known_zones=ZONES)
    assert finding[0] == "items[0].zones[0]" and finding[3] in (
        "did you mean 'zone-1'?",
        "did you mean 'zone-2'?",
    )
    [finding] = only({"items": [item(zones=[])]}, known_zones=ZONES)
    assert finding[0] == "items[0].zones"


def test_bad_items_are_dropped_and_good_ones_kept() -> None:
    raw = {"items": [item(id="good"), item(id="bad", volume=300), "not a mapping"]}
    items, findings = parse_items(raw, VN)
    assert [i.id for i in items] == ["good"]
    assert [f.path_text for f in findings] == ["items[1].volume", "items[2]"]


def test_finding_renders_path_value_expected_and_hint() -> None:
    _, [finding] = parse_items({"items": [item(volme=3)]}, VN)
    assert str(finding) == "items[0].volme: value 'volme': expected a known key (did you mean 'volume'?)"


def test_item_constructor_refuses_broken_invariants() -> None:
    with pytest.raises(ScheduleError, match="exactly one of 'at' or 'rrule'"):
        Item("a", "a.mp3")
    with pytest.raises(ScheduleError, match="aware"):
        Item("a", "a.mp3", at=datetime(2025, 3, 1, 6))
    with pytest.raises(ScheduleError, match="HOURLY or slower"):
        Item("a", "a.mp3", rrule="FREQ=MINUTELY", dtstart=datetime(2025, 3, 1))


def test_expand_daily_rule_in_local_time() -> None:
    news = Item("news", "n.mp3", rrule="FREQ=DAILY;BYHOUR=6;BYMINUTE=30", dtstart=datetime(2020, 1, 1, 6, 30))
    start = datetime(2025, 3, 1, tzinfo=VN)
    found = expand([news], VN, start, start + timedelta(days=2))
    assert [o.start for o in found] == [
        datetime(2025, 2, 28, 23, 30, tzinfo=UTC),
        datetime(2025, 3, 1, 23, 30, tzinfo=UTC),
    ]
    assert found[0].key == "news@2025-02-28T23:30:00+00:00"


def test_expand_respects_validity_and_sorts_by_start_then_level() -> None:
    daily = Item(
        "daily",
        "d.mp3",
        rrule="FREQ=DAILY;BYHOUR=6",
        dtstart=datetime(2025, 3, 1, 6),
        valid_from=datetime(2025, 3, 2, tzinfo=VN),
        valid_until=datetime(2025, 3, 4, 6, tzinfo=VN),
    )
    alert = Item("alert", "a.mp3", level=Level.EMERGENCY, at=datetime(2025, 3, 2, 6, tzinfo=VN))
    found = expand([daily, alert], VN, datetime(2025, 3, 1, tzinfo=VN), datetime(2025, 3, 10, tzinfo=VN))
    assert [(o.item.id, o.start.astimezone(VN).day) for o in found] == [
        ("alert", 2),
        ("daily", 2),
        ("daily", 3),
    ]


def test_dst_local_times_stay_on_the_wall_clock() -> None:
    paris = ZoneInfo("Europe/Paris")
    rule = Item("r", "r.mp3", rrule="FREQ=DAILY;BYHOUR=6", dtstart=datetime(2025, 3, 28, 6))
    found = expand([rule], paris, datetime(2025, 3, 29, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    assert [o.start.astimezone(paris).hour for o in found] == [6, 6, 6]
    assert [o.start.hour for o in found] == [5, 4, 4]  # summer time began on 30 March


def test_first_start_finds_a_yearly_rule_months_ahead() -> None:
    yearly = Item(
        "tet", "t.mp3", rrule="FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=29;BYHOUR=7", dtstart=datetime(2025, 1, 1)
    )
    assert first_start([yearly], VN, datetime(2025, 3, 1, tzinfo=UTC)) == datetime(2026, 1, 29, 0, tzinfo=UTC)


def test_occurrence_start_is_normalised_to_utc() -> None:
    alert = Item("a", "a.mp3", at=datetime(2025, 3, 2, 6, tzinfo=VN))
    assert Occurrence(alert, datetime(2025, 3, 2, 6, tzinfo=VN)).key == "a@2025-03-01T23:00:00+00:00"


def test_local_time_skipped_by_dst_still_plays_at_the_shifted_instant() -> None:
    new_york = ZoneInfo("America/New_York")  # 2025-03-09 02:00 EST jumps to 03:00 EDT (07:00 UTC)
    rule = Item("r", "r.mp3", rrule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30", dtstart=datetime(2025, 3, 1, 2, 30))
    start = datetime(2025, 3, 9, 7, tzinfo=UTC)
    assert [o.start for o in expand([rule], new_york, start, start + timedelta(hours=1))] == [
        start + timedelta(minutes=30)
    ]
