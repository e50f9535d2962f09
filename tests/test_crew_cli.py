"""What a crew runs at the pole, as console scripts against a real running agent (gpiozero's
MockFactory, the null player or real libVLC writing a WAV): ``loa test relays``, ``loa test tone``,
``loa logs``, and every error as one plain line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.clock_trust import ClockTrust
from agent.commands import CommandHandler, Result
from agent.control import request
from agent.crew_cli import _no_journal, journal_command
from agent.events import EventKind
from agent.store import Store, iso
from agent.test_tone import RATE, ensure_tone, tone_path
from drivers.wav_samples import dominant_frequency, read_wav
from tests.agent_harness import RunningAgent, at, running_agent, write_config, write_schedule
from tests.audio_fixtures import libvlc_missing, tone_file, wait_for_finished_wav
from tests.test_agent_fm import fm_section, relaying, write_iq

BIN = Path(sys.executable).parent


def loa(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "loa"), "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def relay_clicks(box: RunningAgent) -> list[tuple[str, bool]]:
    return [(zone, closed) for _, zone, closed in box.agent.relays.history]


def command_id(line: str) -> str:
    found = re.search(r"\((?:command|lệnh) (local-[0-9a-f]+)\)$", line.strip())
    assert found, f"no command id in {line!r}"
    return found.group(1)


# -- loa status ----------------------------------------------------------------------------------


def test_loa_status_is_vietnamese_by_default_and_its_json_the_same_in_every_language(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_passes(2, timeout=5)
        text = loa(config, "status")
        english = loa(config, "status", env={"LOA_LANG": "en"})
        replies = [loa(config, "status", "--json", *lang) for lang in ([], ["--lang", "en"])]
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert lines[0].startswith("thiết bị  test-box-01  (loa ") and lines[1].startswith(
        "phần mềm  đang chạy từ "
    )
    assert lines[2] == "đồng hồ   đúng giờ (clock.require_sync là false: tin giờ hiện tại của máy)"
    assert lines[3:5] == ["đang phát không phát gì", "sắp phát  không có gì trong lịch"]
    assert english.stdout.splitlines()[3] == "playing  nothing"
    assert [(reply.returncode, reply.stderr) for reply in replies] == [(0, ""), (0, "")], replies
    as_json = [json.loads(reply.stdout) for reply in replies]
    for status in as_json:
        del status["now"]
    assert as_json[0] == as_json[1]


# -- loa test relays -----------------------------------------------------------------------------


def test_loa_test_relays_clicks_each_zone_in_turn(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    with running_agent(config) as box:
        result = loa(config, "test", "relays", "--seconds", "1")
        history = list(box.agent.relays.history)
        english = loa(config, "test", "relays", "--seconds", "1", "--zones", "zone-2", "--lang", "en")
        events = loa(config, "logs", "--events", "--lang", "en")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout.splitlines() == [
        "thử rơ-le của 2 vùng loa, mỗi vùng 1 giây:",
        "zone-1: rơ-le đóng 1 giây rồi mở: tốt",
        "zone-2: rơ-le đóng 1 giây rồi mở: tốt",
    ]
    assert [(zone, closed) for _, zone, closed in history] == [
        ("zone-1", True), ("zone-1", False), ("zone-2", True), ("zone-2", False),
    ]  # fmt: skip
    (on_1, _, _), (off_1, _, _), (on_2, _, _), _ = history
    assert 1.0 <= off_1 - on_1 < 2.5 and on_2 >= off_1, "one zone at a time, each held about 1 s"
    assert (english.returncode, english.stdout) == (
        0,
        "testing the relays of 1 zone(s), 1 s each:\nzone-2: relay on for 1 s, then off: ok\n",
    )
    commands = [line for line in events.stdout.splitlines() if " command: " in line]
    assert len(commands) == 3 and all(line.endswith("relay_test from local") for line in commands)


def test_loa_test_relays_waits_while_audio_plays(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(1.5)}', zones: [zone-1]}}")
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        before = relay_clicks(box)
        vi = loa(config, "test", "relays")
        en = loa(config, "test", "relays", env={"LOA_LANG": "en"})
        after = relay_clicks(box)
        direct = request(box.config.control.socket, "relay_test", zones=["zone-2"], seconds=1)
    assert (vi.returncode, vi.stderr) == (1, "")
    assert vi.stdout == "chưa thử được lúc này: 'news' [thường] đang phát; hãy thử lại khi phát xong\n"
    assert en.stdout == "not now: 'news' [normal] is playing; try again when it has ended\n"
    assert after == before == [("zone-1", True)], "no relay was touched"
    assert direct["result"] == "rejected" and direct["reason"].startswith("busy")


# -- loa test tone -------------------------------------------------------------------------------


@pytest.mark.vlc
def test_loa_test_tone_plays_through_the_relays_and_libvlc_and_is_logged(tmp_path: Path) -> None:
    missing = libvlc_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "out.wav"
    args = ["--aout=afile", f"--audiofile-file={out}", "--audiofile-wav"]
    write_schedule(tmp_path)
    config = write_config(tmp_path, backend="vlc", vlc_args=args, preroll="1s", postroll="500ms")
    with running_agent(config) as box:
        result = loa(
            config, "test", "tone", "--zone", "zone-2", "--seconds", "2", "--frequency", "880", "--lang", "en"
        )
        assert (result.returncode, result.stderr) == (0, ""), result
        command = command_id(result.stdout)
        item = f"local-test-{command}"
        assert result.stdout == (
            f"tone 880 Hz for 2 s playing on zone-2 (play log: {item}) (command {command})\n"
        )
        box.wait_for(lambda: box.outcome(item) == "completed", timeout=8)
        box.wait_for(lambda: not any(box.agent.relays.states().values()), timeout=4)
        history = list(box.agent.relays.history)
    wait_for_finished_wav(out)
    samples, rate = read_wav(out)
    assert abs(len(samples) / rate - 2.0) < 0.05, "the whole tone was heard"
    assert abs(dominant_frequency(samples, rate) - 880) < 880 * 0.01
    (row,) = box.play_log()
    assert (row.item_id, row.origin, row.outcome, row.level, row.zones) == (
        item, "local-test", "completed", "normal", ("zone-2",),
    )  # fmt: skip
    assert row.audio == str(tone_path(box.config.storage.dir, 880, 2))
    assert [(zone, closed) for _, zone, closed in history] == [("zone-2", True), ("zone-2", False)]
    assert row.actual_start is not None


def test_loa_test_tone_is_refused_while_something_plays(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 6.0)
    write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-6s.wav, at: '{at(1.5)}', priority: priority}}")
    config = write_config(tmp_path)
    with running_agent(config) as box:
        box.wait_for(lambda: box.outcome("news") == "playing", timeout=6)
        vi = loa(config, "test", "tone")
        direct = request(box.config.control.socket, "test_tone", timeout=10, seconds=1)
    assert (vi.returncode, vi.stderr) == (1, "")
    assert vi.stdout == "chưa thử được lúc này: 'news' [ưu tiên] đang phát; hãy thử lại khi phát xong\n"
    assert direct["result"] == "rejected" and direct["reason"] == "not now: 'news' [priority] is playing"
    assert [row.item_id for row in box.play_log()] == ["news"]


def test_loa_test_tone_plays_in_vietnamese_through_the_null_player(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    config = write_config(tmp_path, preroll="500ms")
    with running_agent(config) as box:
        result = loa(config, "test", "tone", "--seconds", "1")
        command = command_id(result.stdout)
        box.wait_for(lambda: box.outcome(f"local-test-{command}") == "completed", timeout=6)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == (
        f"đang phát âm thử 1000 Hz trong 1 giây trên zone-1, zone-2 "
        f"(nhật ký phát: local-test-{command}) (lệnh {command})\n"
    )


def test_the_tone_takes_over_from_fm_and_the_relay_test_waits_for_it(tmp_path: Path) -> None:
    """FM is the lowest source: a crew's tone plays over it, and FM comes back after; the relay
    test is refused while FM is relayed (the relays are in use)."""
    iq = write_iq(tmp_path, station=True)
    write_schedule(tmp_path)
    config = write_config(tmp_path, preroll="500ms", postroll="500ms", extra=fm_section(iq))
    with running_agent(config) as box:
        box.wait_for(lambda: relaying(box), timeout=6)
        relays = loa(config, "test", "relays", "--lang", "en")
        tone = loa(config, "test", "tone", "--seconds", "1", "--lang", "en")
        item = f"local-test-{command_id(tone.stdout)}"
        box.wait_for(lambda: box.outcome(item) == "completed", timeout=6)
        box.wait_for(lambda: relaying(box), timeout=6)
    assert (relays.returncode, relays.stdout) == (
        1,
        "not now: the FM station is being relayed (loa stop pauses it); try again when it has ended\n",
    )
    assert tone.returncode == 0 and tone.stdout.startswith("tone 1000 Hz for 1 s playing on zone-1, zone-2")


def test_no_tone_on_an_untrusted_clock(tmp_path: Path) -> None:
    write_schedule(tmp_path)
    never = ClockTrust(True, kernel_synced=lambda: False, sync_markers=(), agent_marker=None)
    config = write_config(tmp_path, require_sync=True)
    with running_agent(config, clock=never) as box:
        result = loa(config, "test", "tone")
        assert box.play_log() == [] and not box.agent.relays.history
    assert (result.returncode, result.stderr) == (1, "")
    assert re.fullmatch(
        r"bị từ chối: đồng hồ chưa đúng giờ nên không phát gì: đồng hồ đang chỉ .*|"
        r"bị từ chối: đồng hồ chưa đúng giờ nên không phát gì: đang chờ đồng bộ giờ qua mạng \(NTP\): .*",
        result.stdout.split(" (lệnh ")[0],
    ), result.stdout


def test_the_tone_file_is_made_once_whole_and_at_its_pitch(tmp_path: Path) -> None:
    path = ensure_tone(tmp_path, 440, 3)
    samples, rate = read_wav(path)
    assert (rate, len(samples)) == (RATE, 3 * RATE)
    assert abs(dominant_frequency(samples, rate) - 440) < 440 * 0.01
    assert abs(samples).max() <= 0.51 and abs(samples[0]) < 0.01 and abs(samples[-1]) < 0.01, "faded"
    made = path.stat().st_mtime_ns
    assert ensure_tone(tmp_path, 440, 3) == path and path.stat().st_mtime_ns == made, "kept"
    path.write_bytes(path.read_bytes()[:1000])  # cut short (not by us: we rename whole files)
    assert len(read_wav(ensure_tone(tmp_path, 440, 3))[0]) == 3 * RATE, "made again"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no partial left"


def test_crews_asking_for_the_same_new_tone_at_once_each_get_a_whole_file(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: ensure_tone(tmp_path, 523, 2), range(4)))
    assert len(set(paths)) == 1 and len(read_wav(paths[0])[0]) == 2 * RATE
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]


def test_a_tone_that_cannot_be_written_is_refused_in_plain_words(tmp_path: Path) -> None:
    (tmp_path / "test-tones").write_text("in the way")
    handler = CommandHandler(lambda event: None, zones=frozenset({"zone-1"}), status=dict, storage=tmp_path)
    ack = handler.submit("test_tone", {"seconds": 1}, origin="local")
    assert ack.result is Result.REJECTED
    assert ack.reason.startswith(f"cannot write the test tone in {tmp_path / 'test-tones'}: ")
    bad = handler.submit("test_tone", {"frequency": 20000}, origin="local")
    assert bad.reason == "'frequency' must be a whole number from 100 to 4000"


# -- loa logs ------------------------------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    """A box whose agent ran and recorded events, one of them two hours ago."""
    config = write_config(tmp_path)
    store = Store.open(tmp_path / "state")
    old = iso(datetime.now(UTC) - timedelta(hours=2))
    store._add_event(EventKind.AGENT_STARTED, "device test-box-01", at=old)
    store.add_event(EventKind.CLOCK_UNTRUSTED, "waiting for NTP: no time synchronization seen since boot")
    store.add_event(EventKind.PLAY_FAILED, "news: file not found: /srv/news.wav")
    store.close()
    yield config


def test_loa_logs_events_in_the_crews_words(recorded: Path) -> None:
    vi = loa(recorded, "logs", "--events")
    en = loa(recorded, "logs", "--events", "--lang", "en")
    assert (vi.returncode, vi.stderr) == (0, "")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    lines = vi.stdout.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"{stamp}   phần mềm khởi động: device test-box-01", lines[0])
    assert re.fullmatch(
        rf"{stamp} ~ đồng hồ chưa đúng giờ: đang chờ đồng bộ giờ qua mạng \(NTP\): "
        "chưa đồng bộ lần nào từ khi khởi động",
        lines[1],
    )
    assert re.fullmatch(rf"{stamp} ! phát lỗi: news: file not found: /srv/news.wav", lines[2])
    assert re.fullmatch(
        rf"{stamp} ! play.failed: news: file not found: /srv/news.wav", en.stdout.splitlines()[2]
    )
    recent = loa(recorded, "logs", "--events", "--since", "1h", "--lang", "en").stdout.splitlines()
    assert [line[20:] for line in recent] == [
        "~ clock.untrusted: waiting for NTP: no time synchronization seen since boot",
        "! play.failed: news: file not found: /srv/news.wav",
    ]
    assert loa(recorded, "logs", "--events", "-n", "1", "--lang", "en").stdout.count("\n") == 1
    nothing = loa(recorded, "logs", "--events", "--since", "1s", "--lang", "en")
    assert re.fullmatch(rf"\(no events since {stamp}\)\n", nothing.stdout)


def test_loa_logs_reads_the_journal_where_there_is_one(recorded: Path) -> None:
    result = loa(recorded, "logs", "-n", "5")
    if _no_journal() is None:  # a box (or CI runner) under systemd: journalctl answers
        assert "Traceback" not in result.stderr and result.returncode in (0, 1)
        return
    assert result.returncode == 0
    assert result.stderr.startswith("máy này không có nhật ký hệ thống của loa-agent (")
    assert result.stdout.count("\n") == 3, "the store's events instead"


def test_the_journal_command_for_the_agent() -> None:
    since = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert journal_command(since, 50, True) == [
        "journalctl", "--unit", "loa-agent", "--no-pager", "--output", "short-iso",
        "--since", f"@{int(since.timestamp())}", "--lines", "50", "--follow",
    ]  # fmt: skip
    assert journal_command(None, None, False)[-1] == "short-iso"


def test_loa_logs_follow_shows_new_events_until_ctrl_c(recorded: Path) -> None:
    follower = subprocess.Popen(
        [str(BIN / "loa"), "--config", str(recorded), "logs", "--events", "-f", "-n", "1", "--lang", "en"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        assert "play.failed" in follower.stdout.readline()
        store = Store.open(recorded.parent / "state")
        store.add_event(EventKind.STORAGE_FAULT, "the storage is full")
        store.close()
        assert follower.stdout.readline().endswith("! storage.fault: the storage is full\n")
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=10)
    assert follower.returncode == 130 and "Traceback" not in err


# -- every error is one plain line -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["test", "relays"], {}, 6, "the agent is not running (nobody listens on "),
        (["test", "tone"], {}, 6, "the agent is not running (nobody listens on "),
        (["test", "relays", "--seconds", "9"], {}, 2, "argument --seconds: '9' is not a whole number"),
        (["test", "tone", "--frequency", "20"], {}, 2, "argument --frequency: '20' is not a whole"),
        (["test", "tone", "--zone", "zone-9"], {}, 2, "no amplifier for zone(s) zone-9 in "),
        (["test"], {}, 2, "the following arguments are required: test (see loa test --help)"),
        (["logs", "-n", "0"], {}, 2, "argument -n/--lines: '0' is not a whole number from 1 to 100000"),
        (["logs", "--since", "soon"], {}, 2, "--since 'soon': expected a duration such as 30min, 1h or 2d"),
        (["logs", "--events"], {}, 5, "no store at "),
        (["status", "--lang", "xx"], {}, 2, "--lang 'xx': expected one of vi, en"),
        (["status"], {"LOA_LANG": "klingon"}, 2, "LOA_LANG 'klingon': expected one of vi, en"),
        (["playlog", "--since", "soon"], {}, 2, "--since 'soon': expected a duration such as 24h or 7d"),
        (["stauts"], {}, 2, "argument command: invalid choice: 'stauts'"),
        (["fm", "demod", "--deemphasis", "60us"], {}, 2, "argument --deemphasis: de-emphasis '60us'"),
    ],
)  # fmt: skip
def test_errors_are_one_plain_line(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    result = loa(write_config(tmp_path), *args, env=env)
    assert result.returncode == code, result
    assert result.stderr.startswith(f"loa: {says}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and result.stdout == ""


def test_a_corrupt_store_is_one_plain_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"not a database, after a power cut" * 100)
    playlog = loa(config, "playlog")
    status = loa(config, "status")
    assert (playlog.returncode, playlog.stdout) == (5, "")
    assert playlog.stderr.endswith("loa: the store cannot be read: file is not a database\n")
    assert status.returncode == 1 and status.stdout.startswith("thiết bị  test-box-01")
    for result in (playlog, status):
        assert "Traceback" not in result.stderr
        assert all(line.startswith("loa: ") for line in result.stderr.splitlines()), result.stderr


def test_a_missing_config_is_one_plain_line(tmp_path: Path) -> None:
    result = loa(tmp_path / "nowhere.yaml", "test", "relays")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result
    assert str(tmp_path / "nowhere.yaml") in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_crew_without_permission_is_told_to_use_sudo(tmp_path: Path) -> None:
    """The socket belongs to someone else and loa runs without the power to override that (root
    without CAP_DAC_OVERRIDE is refused as any other user would be)."""
    write_schedule(tmp_path)
    config = write_config(tmp_path)
    socket = tmp_path / "agent.sock"
    with running_agent(config):
        os.chown(socket, 65534, 65534)
        powerless = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
        result = subprocess.run(
            [*powerless, str(BIN / "loa"), "--config", str(config), "status"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 8, result
    assert (
        result.stderr
        == f"loa: no permission to use {socket}: run loa with sudo, or as a member of the loa group\n"
    )
    assert result.stdout == ""
