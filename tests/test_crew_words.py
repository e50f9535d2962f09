"""``loa status`` in a crew's words: both catalogues complete, and every state and fault of the
status board rendered in Vietnamese and in English."""

from __future__ import annotations

import string
import unicodedata
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import messages_en, messages_vi
from agent.messages import choose_language, words
from agent.status import FROM_STORE, NOT_ANSWERING, health_lines, not_answering_status, render
from foundation.errors import UsageError

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# -- the catalogues ------------------------------------------------------------------------------


def test_both_catalogues_have_the_same_messages_with_the_same_fields() -> None:
    # What an alarm means is in Vietnamese here; in English it is agent/alarms.py's own words.
    meanings = {key for key in messages_vi.MESSAGES if key.startswith("alarm.")} - set(messages_en.MESSAGES)
    assert meanings and all(key.count(".") >= 2 for key in meanings)
    assert set(messages_vi.MESSAGES) - meanings == set(messages_en.MESSAGES)
    for key, english in messages_en.MESSAGES.items():
        assert fields(messages_vi.MESSAGES[key]) == fields(english), key


def test_vietnamese_is_composed_and_really_vietnamese() -> None:
    for key, text in messages_vi.MESSAGES.items():
        assert unicodedata.is_normalized("NFC", text), key
    for _, template in messages_vi.REASONS:
        assert unicodedata.is_normalized("NFC", template)
    said = words("vi")
    assert said("label.clock") == "đồng hồ" and said("playing.nothing") == "không phát gì"
    assert said("label.relays") == "rơ-le" and said("label.fault") == "SỰ CỐ"


def test_every_event_kind_has_words_in_both_languages() -> None:
    from agent.events import EventKind

    for kind in EventKind:
        assert f"kind.{kind.value}" in messages_vi.MESSAGES, kind
        assert messages_en.MESSAGES[f"kind.{kind.value}"] == kind.value, "English shows the wire name"


def test_the_language_is_the_flag_then_loa_lang_then_vietnamese() -> None:
    assert choose_language(None, {}) == "vi"
    assert choose_language(None, {"LOA_LANG": "en"}) == "en"
    assert choose_language(None, {"LOA_LANG": "en_US.UTF-8"}) == "en"
    assert choose_language("vi", {"LOA_LANG": "en"}) == "vi"
    assert choose_language(None, {"LOA_LANG": " "}) == "vi"
    with pytest.raises(UsageError, match=r"--lang 'fr': expected one of vi, en"):
        choose_language("fr", {})
    with pytest.raises(UsageError, match=r"LOA_LANG 'de_DE': expected one of vi, en"):
        choose_language(None, {"LOA_LANG": "de_DE"})


def test_a_missing_word_falls_back_to_english_then_to_its_id() -> None:
    said = words("vi")
    assert said.known("kind.some.new_kind", "some.new_kind") == "some.new_kind"
    assert said("no.such.message") == "no.such.message"
    assert said.reason("something the catalogue does not know") == "something the catalogue does not know"


# -- the status board in both languages ----------------------------------------------------------

RUNNING: dict[str, Any] = {
    "running": True,
    "state": "running",
    "device": "xa-quang-son-01",
    "version": "0.1.0",
    "since": "2026-11-26T00:00:05.000+00:00",
    "clock": {"trusted": True, "reason": "kernel reports the clock NTP-synchronized"},
    "playing": None,
    "next": [
        {"item": "morning-news", "level": "priority", "at": "2026-11-26T23:30:00.000+00:00"},
        {"item": "weather", "level": "normal", "at": "2026-11-27T00:00:00.000+00:00"},
    ],
    "relays": {"zone-1": False, "zone-2": False},
    "schedule": {
        "items": 12,
        "origins": {"local": {"items": 12, "version": "3fa2c1b09d7e", "source": "/etc/loa/schedule.yaml"}},
    },
    "faults": [],
    "errors": [],
    "link": {"configured": False},
}


def shown(status: dict[str, Any], language: str) -> list[str]:
    return render(status, TZ, language).splitlines()


def test_an_idle_running_box() -> None:
    assert shown(RUNNING, "vi") == [
        "thiết bị  xa-quang-son-01  (loa 0.1.0)",
        "phần mềm  đang chạy từ 2026-11-26 07:00:05",
        "đồng hồ   đúng giờ (hệ thống báo đồng hồ đã đồng bộ qua mạng (NTP))",
        "đang phát không phát gì",
        "sắp phát  2026-11-27 06:30:00  morning-news [ưu tiên]",
        "          2026-11-27 07:00:00  weather [thường]",
        "rơ-le     zone-1=tắt  zone-2=tắt",
        "lịch phát 12 mục: local 12 (phiên bản 3fa2c1b09d7e, từ /etc/loa/schedule.yaml)",
    ]
    assert shown(RUNNING, "en") == [
        "device   xa-quang-son-01  (loa 0.1.0)",
        "agent    running since 2026-11-26 07:00:05",
        "clock    trusted (kernel reports the clock NTP-synchronized)",
        "playing  nothing",
        "next     2026-11-27 06:30:00  morning-news [priority]",
        "         2026-11-27 07:00:00  weather [normal]",
        "relays   zone-1=off  zone-2=off",
        "schedule 12 items: local 12 (version 3fa2c1b09d7e, from /etc/loa/schedule.yaml)",
    ]


def test_the_default_language_of_render_is_english_and_every_text_starts_in_one_column() -> None:
    assert render(RUNNING, TZ) == render(RUNNING, TZ, "en")
    for language in ("vi", "en"):
        width = words(language).label_width
        for line in shown(
            {**RUNNING, "faults": ["storage: the storage is full; records kept in memory (3)"]}, language
        ):
            assert (line[width] == " " and line[width + 1] != " ") or line.startswith(" " * (width + 1)), line


def test_playing_an_emergency_on_two_zones() -> None:
    since = "2026-11-26T03:15:00.000+00:00"
    playing = {"item": "storm-warning", "level": "emergency", "since": since, "zones": ["zone-1", "zone-2"]}
    status = {**RUNNING, "relays": {"zone-1": True, "zone-2": True}, "next": [], "playing": playing}
    vi, en = shown(status, "vi"), shown(status, "en")
    assert "đang phát storm-warning [khẩn cấp] từ 2026-11-26 10:15:00 trên zone-1, zone-2" in vi
    assert "sắp phát  không có gì trong lịch" in vi and "rơ-le     zone-1=BẬT  zone-2=BẬT" in vi
    assert "playing  storm-warning [emergency] since 2026-11-26 10:15:00 on zone-1, zone-2" in en
    assert "next     nothing scheduled" in en and "relays   zone-1=ON  zone-2=ON" in en


def test_an_untrusted_clock() -> None:
    clock = {"trusted": False, "reason": "waiting for NTP: no time synchronization seen since boot"}
    vi, en = shown({**RUNNING, "clock": clock}, "vi"), shown({**RUNNING, "clock": clock}, "en")
    assert vi[2] == (
        "đồng hồ   CHƯA ĐÚNG GIỜ - lịch phát sẽ không bắt đầu (đang chờ đồng bộ giờ qua mạng (NTP): "
        "chưa đồng bộ lần nào từ khi khởi động)"
    )
    assert en[2] == (
        "clock    NOT TRUSTED - nothing scheduled will start "
        "(waiting for NTP: no time synchronization seen since boot)"
    )
    before_build = {
        "trusted": False,
        "reason": "clock reads 2000-01-01 00:01Z, before this release was built",
    }
    assert shown({**RUNNING, "clock": before_build}, "vi")[2].endswith(
        "(đồng hồ đang chỉ 2000-01-01 00:01Z, sớm hơn ngày phát hành phần mềm)"
    )


STALLED = "player stalled: no progress for 3.0 s at 00:12 of 00:45; libVLC is being restarted"
READ_ONLY = "the storage is read-only (an SD card fault after a power cut?)"


def test_faults_and_recent_errors() -> None:
    status = {
        **RUNNING,
        "faults": [
            f"audio player: {STALLED}",
            f"storage: {READ_ONLY}; records kept in memory (12)",
            "FM: no RTL-SDR dongle found (device 0) - check the USB cable",
        ],
        "errors": [
            {"at": "2026-11-26T00:12:00.000+00:00", "kind": "play.failed", "detail": "news: file not found"},
            {"at": "2026-11-26T00:13:00.000+00:00", "kind": "alarm.new", "detail": "a kind added later"},
        ],
    }  # fmt: skip
    vi, en = shown(status, "vi"), shown(status, "en")
    assert vi[-5:] == [
        f"SỰ CỐ     bộ phát âm thanh: {STALLED}",
        "SỰ CỐ     bộ nhớ: thẻ nhớ chỉ đọc được (thẻ SD hỏng sau khi mất điện?); "
        "12 bản ghi đang giữ tạm trong RAM",
        "SỰ CỐ     FM: no RTL-SDR dongle found (device 0) - check the USB cable",
        "lỗi       2026-11-26 07:12:00 phát lỗi: news: file not found",
        "lỗi       2026-11-26 07:13:00 alarm.new: a kind added later",
    ]
    assert en[-5:] == [
        f"FAULT    audio player: {STALLED}",
        f"FAULT    storage: {READ_ONLY}; records kept in memory (12)",
        "FAULT    FM: no RTL-SDR dongle found (device 0) - check the USB cable",
        "error    2026-11-26 07:12:00 play.failed: news: file not found",
        "error    2026-11-26 07:13:00 alarm.new: a kind added later",
    ]
    full = {**RUNNING, "faults": ["storage: the storage is full; records kept in memory (3)"]}
    assert shown(full, "vi")[-1] == "SỰ CỐ     bộ nhớ: thẻ nhớ đã đầy; 3 bản ghi đang giữ tạm trong RAM"


@pytest.mark.parametrize(
    ("fm", "vi", "en"),
    [
        ({"relaying": True, "carrier": True, "source": "ok", "decision": "relay_hours", "rssi_dbfs": -21.5,
          "snr_db": 31.0},
         "ĐANG TIẾP SÓNG: có sóng, mức -21.5 dBFS, SNR 31.0 dB",
         "RELAYING: carrier present, level -21.5 dBFS, SNR 31.0 dB"),
        ({"relaying": False, "carrier": False, "source": "ok", "decision": "no_carrier"},
         "không tiếp sóng (không có sóng): không có sóng",
         "not relaying (no_carrier): no carrier"),
        ({"relaying": False, "carrier": False, "source": "opening", "decision": "outside_hours"},
         "không tiếp sóng (ngoài giờ tiếp sóng): máy thu đang mở",
         "not relaying (outside_hours): source opening"),
        ({"relaying": False, "carrier": True, "source": "ok", "decision": "relay_hours",
          "paused_until": "2026-11-26T07:35:00.000+00:00"},
         "TẠM DỪNG bởi lệnh loa stop đến 2026-11-26 14:35:00: có sóng",
         "PAUSED by loa stop until 2026-11-26 14:35:00: carrier present"),
        ({"relaying": False, "source": "missing", "decision": "no_carrier",
          "source_error": "no RTL-SDR dongle found (device 0) - check the USB cable"},
         "SỰ CỐ: no RTL-SDR dongle found (device 0) - check the USB cable",
         "FAULT: no RTL-SDR dongle found (device 0) - check the USB cable"),
    ],
)  # fmt: skip
def test_the_fm_relay(fm: dict[str, Any], vi: str, en: str) -> None:
    status = {**RUNNING, "fm": {"frequency_mhz": 99.1, **fm}}
    assert [line for line in shown(status, "vi") if line.startswith("FM ")] == [f"FM        99.1 MHz {vi}"]
    assert [line for line in shown(status, "en") if line.startswith("fm ")] == [f"fm       99.1 MHz {en}"]


def test_the_central_link_up_and_down() -> None:
    link = {"configured": True, "connected": True, "broker": "mqtts://mqtt.quang-tri.gov.vn:8883",
            "since": "2026-11-25T23:02:11.000+00:00", "last_contact": "2026-11-26T07:35:02.000+00:00",
            "spool": {"play_log": 0, "events": 2, "telemetry": 7, "acks": 1}}  # fmt: skip
    up = shown({**RUNNING, "link": link}, "vi")
    at = up.index("trung tâm đã kết nối từ 2026-11-26 06:02:11 (mqtts://mqtt.quang-tri.gov.vn:8883)")
    assert up[at + 1] == (
        "          liên lạc lần cuối 2026-11-26 14:35:02; "
        "đang chờ gửi: 0 bản ghi phát, 2 sự kiện, 7 mẫu đo, 1 xác nhận lệnh"
    )
    down = shown({**RUNNING, "link": {**link, "connected": False}}, "vi")
    assert "trung tâm MẤT KẾT NỐI từ 2026-11-26 06:02:11 (mqtts://mqtt.quang-tri.gov.vn:8883)" in down
    english = shown({**RUNNING, "link": {**link, "connected": False}}, "en")
    assert "link     DOWN since 2026-11-26 06:02:11 (mqtts://mqtt.quang-tri.gov.vn:8883)" in english
    assert (
        "         last contact 2026-11-26 14:35:02; waiting to send: 0 play-log records, 2 events, "
        "7 telemetry samples, 1 acks" in english
    )


STOPPED: dict[str, Any] = {
    "running": False,
    "state": "stopped",
    "device": "xa-quang-son-01",
    "version": "0.1.0",
    "clock": {"trusted": None, "reason": "unknown: the agent is not running"},
    "playing": None,
    "last_played": {"item_id": "morning-news", "outcome": "playing",
                    "scheduled_start": "2026-11-25T23:30:00.000+00:00"},
    "next": [],
    "relays": None,
    "relays_last_known": {"at": "2026-11-25T23:29:58.000+00:00", "closed": {"zone-1": True, "zone-2": False}},
    "schedule": {"items": 3, "error": None,
                 "origins": {"local": {"items": 3, "version": "3fa2c1b09d7e", "source": FROM_STORE}}},
    "errors": [],
}  # fmt: skip


def test_an_agent_that_is_not_running() -> None:
    assert shown(STOPPED, "vi") == [
        "thiết bị  xa-quang-son-01  (loa 0.1.0)",
        "phần mềm  KHÔNG CHẠY (hiển thị theo dữ liệu đã lưu trên máy)",
        "đồng hồ   không rõ (không rõ: phần mềm không chạy)",
        "đang phát không rõ (phần mềm không chạy)",
        "phát cuối morning-news đang phát lúc 2026-11-26 06:30:00",
        "sắp phát  không có gì trong lịch",
        "rơ-le     hiện không rõ (phần mềm không chạy)",
        "          ghi lại lần cuối 2026-11-26 06:29:58: zone-1=BẬT  zone-2=tắt",
        "lịch phát 3 mục: local 3 (phiên bản 3fa2c1b09d7e, từ bản lưu tốt gần nhất)",
    ]
    assert shown(STOPPED, "en") == [
        "device   xa-quang-son-01  (loa 0.1.0)",
        "agent    NOT RUNNING (showing what the store knows)",
        "clock    unknown (unknown: the agent is not running)",
        "playing  unknown (agent not running)",
        "last     morning-news playing at 2026-11-26 06:30:00",
        "next     nothing scheduled",
        "relays   unknown now (agent not running)",
        "         last recorded 2026-11-26 06:29:58: zone-1=ON  zone-2=off",
        "schedule 3 items: local 3 (version 3fa2c1b09d7e, from store (last good copy))",
    ]


def test_an_agent_that_does_not_answer_and_one_that_never_ran() -> None:
    note = "the agent did not answer within 3 s on /run/loa/agent.sock"
    stuck = not_answering_status({**STOPPED, "relays_last_known": None}, note)
    assert stuck["state"] == NOT_ANSWERING
    vi = shown(stuck, "vi")
    assert vi[1:4] == [
        "phần mềm  ĐANG CHẠY nhưng KHÔNG TRẢ LỜI: phần mềm không trả lời trong 3 giây ở /run/loa/agent.sock",
        "          (hiển thị theo dữ liệu đã lưu trên máy)",
        "đồng hồ   không rõ (không rõ: phần mềm không trả lời)",
    ]
    assert "rơ-le     hiện không rõ (phần mềm không trả lời); chưa từng ghi lại" in vi
    assert "relays   unknown now (agent not answering); never recorded" in shown(stuck, "en")
    never = {"running": False, "state": "never run", "device": "xa-1", "version": "0.1.0", "store": None,
             "note": "the agent is not running (nobody listens on /run/loa/agent.sock)"}  # fmt: skip
    assert shown(never, "vi") == [
        "thiết bị  xa-1  (loa 0.1.0)",
        "phần mềm  KHÔNG CHẠY, và chưa để lại bản ghi nào",
        "          phần mềm không chạy (không có gì nghe lệnh ở /run/loa/agent.sock)",
    ]


def test_a_refused_schedule_file_shows_why_in_both_languages() -> None:
    schedule = {
        "items": 0,
        "error": "/etc/loa/schedule.yaml:3: items[1].at: 'x' is not a date",
        "origins": {},
    }
    vi, en = shown({**RUNNING, "schedule": schedule}, "vi"), shown({**RUNNING, "schedule": schedule}, "en")
    assert vi[-2:] == ["lịch phát 0 mục: không có nguồn lịch nào",
                       "          /etc/loa/schedule.yaml:3: items[1].at: 'x' is not a date"]  # fmt: skip
    assert en[-2:] == ["schedule 0 items: no origin",
                       "         /etc/loa/schedule.yaml:3: items[1].at: 'x' is not a date"]  # fmt: skip


def test_the_agents_refusals_in_vietnamese() -> None:
    said = words("vi")
    assert (
        said.reason("not now: 'news' [priority] is playing")
        == "chưa được lúc này: 'news' [ưu tiên] đang phát"
    )
    assert said.reason(
        "nothing starts on an untrusted clock: waiting for NTP: no time synchronization seen since boot"
    ) == (
        "đồng hồ chưa đúng giờ nên không phát gì: đang chờ đồng bộ giờ qua mạng (NTP): "
        "chưa đồng bộ lần nào từ khi khởi động"
    )
    assert said.reason("busy: something plays, waits or is being tested").startswith("đang bận: ")
    assert (
        words("en").reason("not now: 'news' [priority] is playing") == "not now: 'news' [priority] is playing"
    )


# -- [health] power, modem, board and alarms --------------------------------------------------------

HEALTHY: dict[str, Any] = {
    "mains": {"configured": False, "present": None},
    "modem": {"configured": False, "rssi_dbm": None},
    "cpu": {"temp_c": 48.25, "throttled": "0x0", "throttled_flags": []},
    "storage": {"free_bytes": 12_300_000_000, "total_bytes": 29_100_000_000, "read_only": False},
    "alarms": [],
    "unavailable": [],
}
SICK: dict[str, Any] = {
    **HEALTHY,
    "mains": {"configured": True, "present": False},
    "modem": {"configured": True, "port": "/dev/ttyUSB2", "answering": False,
              "error": "modem port /dev/ttyUSB2 not found - is the modem plugged in?"},
    "cpu": {"temp_c": None, "throttled": None, "throttled_flags": ["under-voltage now"]},
    "storage": {"free_bytes": 0, "total_bytes": 1_000_000_000, "read_only": True},
    "alarms": [{"code": "modem.dead", "since": "2026-11-26T01:02:03.000Z",
                "words": "the 4G modem does not answer (or answers garbage)",
                "detail": "modem port /dev/ttyUSB2 not found - is the modem plugged in?"},
               {"code": "amp.fault.zone-2", "since": "2026-11-26T01:05:00.000Z",
                "words": "the amplifier's fault output is on", "detail": ""}],
    "unavailable": ["amplifier zone-1 fault input on pin 24 cannot be opened: pin in use"],
}  # fmt: skip


def test_health_in_english_and_vietnamese() -> None:
    assert health_lines(HEALTHY, TZ) == ["board    CPU 48.2 °C; storage 12.3 GB free of 29.1 GB"]
    assert health_lines(HEALTHY, TZ, "vi") == ["bo mạch   CPU 48.2 °C; bộ nhớ còn trống 12.3 GB / 29.1 GB"]
    assert health_lines(None, TZ, "vi") == []  # the agent is not running: nothing to say
    assert health_lines(SICK, TZ) == [
        "power    ON BACKUP SUPPLY: no mains",
        "modem    NOT ANSWERING: modem port /dev/ttyUSB2 not found - is the modem plugged in?",
        "board    CPU temperature unknown; under-voltage now; storage 0.0 GB free of 1.0 GB, READ-ONLY",
        "ALARM    modem.dead since 2026-11-26 08:02:03: the 4G modem does not answer (or answers garbage)"
        " (modem port /dev/ttyUSB2 not found - is the modem plugged in?)",
        "ALARM    amp.fault.zone-2 since 2026-11-26 08:05:00: the amplifier's fault output is on",
        "         not watched: amplifier zone-1 fault input on pin 24 cannot be opened: pin in use",
    ]
    assert health_lines(SICK, TZ, "vi") == [
        "nguồn     ĐANG DÙNG NGUỒN DỰ PHÒNG: mất điện lưới",
        "modem     KHÔNG TRẢ LỜI: modem port /dev/ttyUSB2 not found - is the modem plugged in?",
        "bo mạch   chưa rõ nhiệt độ CPU; thiếu điện áp (lúc này); bộ nhớ còn trống 0.0 GB / 1.0 GB, CHỈ ĐỌC",
        "CẢNH BÁO  modem.dead từ 2026-11-26 08:02:03: modem 4G không trả lời (hoặc trả lời sai)"
        " (modem port /dev/ttyUSB2 not found - is the modem plugged in?)",
        "CẢNH BÁO  amp.fault.zone-2 từ 2026-11-26 08:05:00: ngõ báo lỗi của âm ly đang bật",
        "          không theo dõi được: amplifier zone-1 fault input on pin 24 cannot be opened: pin in use",
    ]


@pytest.mark.parametrize(
    ("modem", "en", "vi"),
    [
        ({"answering": True, "rssi_dbm": -77, "registration": "home", "operator": "Vinaphone",
          "access": "LTE"},
         "signal -77 dBm, registered (home), Vinaphone LTE",
         "sóng -77 dBm, đã vào mạng (mạng nhà), Vinaphone LTE"),
        ({"answering": True, "rssi_dbm": None, "registration": "searching"},
         "signal unknown, SEARCHING", "chưa rõ mức sóng, ĐANG TÌM MẠNG"),
        ({"answering": True, "rssi_dbm": -101, "registration": "denied"},
         "signal -101 dBm, DENIED", "sóng -101 dBm, BỊ MẠNG TỪ CHỐI"),
        ({"answering": None, "port": "/dev/ttyUSB2"},
         "/dev/ttyUSB2: not asked yet", "/dev/ttyUSB2: chưa hỏi"),
    ],
)  # fmt: skip
def test_the_modem_line(modem: dict[str, Any], en: str, vi: str) -> None:
    health = {**HEALTHY, "modem": {"configured": True, **modem}}
    assert health_lines(health, TZ)[0] == f"modem    {en}"
    assert health_lines(health, TZ, "vi")[0] == f"modem     {vi}"


def test_the_health_lines_come_after_the_link_in_the_status_board() -> None:
    status = {**RUNNING, "health": {**HEALTHY, "mains": {"configured": True, "present": True}}}
    vi = shown(status, "vi")
    assert vi[vi.index("rơ-le     zone-1=tắt  zone-2=tắt") + 1 :][:2] == [
        "nguồn     có điện lưới",
        "bo mạch   CPU 48.2 °C; bộ nhớ còn trống 12.3 GB / 29.1 GB",
    ]
