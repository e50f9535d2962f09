"""Schedule origins: each origin's version, its last good copy in the store, and the union of origins.

The local file is the one origin today; the central manifest will be a second one, so the union
and the per-origin copy are tested with a stand-in ``central`` origin built the way the link will.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.config import Config, load_config
from agent.events import EventKind
from agent.schedule_source import COMMAND_ORIGIN, Origin, Schedule, file_version
from agent.store import Store
from scheduler.items import Item, parse_items
from tests.agent_harness import at, running_agent, write_config, write_schedule
from tests.audio_fixtures import tone_file

BIN = Path(sys.executable).parent
BAD = "items:\n  - {id: x, audoi: y.wav, at: '2026-12-01T06:30:00+07:00'}\n"


def setup(tmp_path: Path, *items: str) -> tuple[Config, Store, Schedule]:
    write_schedule(tmp_path, *items)
    config = load_config(write_config(tmp_path))
    store = Store.open(config.storage.dir)
    schedule = Schedule(config)
    schedule.load(store)
    return config, store, schedule


def loa_status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "loa"), "--config", str(config), "status", "--lang", "en"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def schedule_line(status: str) -> str:
    return next(line for line in status.splitlines() if line.startswith("schedule "))


def test_the_local_version_follows_the_file(tmp_path: Path) -> None:
    _config, store, schedule = setup(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}")
    path = tmp_path / "schedule.yaml"
    first = schedule.local.version
    assert first == file_version(path) and len(first) == 12
    assert store.schedule_origin("local")["version"] == first
    assert schedule.reload(store).accepted and schedule.local.version == first  # same bytes, same version
    write_schedule(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:31:00+07:00'}")
    result = schedule.reload(store)
    assert result.accepted and result.origin.version == file_version(path) != first
    assert store.schedule_origin("local") | {"loaded_at": None} == {
        "version": result.origin.version,
        "source": str(path),
        "loaded_at": None,
        "items": 1,
    }
    store.close()


def test_a_bad_file_keeps_the_schedule_and_version_it_had(tmp_path: Path) -> None:
    _config, store, schedule = setup(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}")
    good = schedule.local.version
    (tmp_path / "schedule.yaml").write_text(BAD)
    result = schedule.reload(store)
    assert not result.accepted and "schedule.yaml:2: items[0].audoi" in result.problems[0]
    assert [item.id for item in schedule.items] == ["a"] and schedule.local.version == good
    assert schedule.error is not None and schedule.error.startswith("schedule file refused (")
    assert store.schedule_origin("local")["version"] == good
    assert [spec["id"] for spec in store.schedule_specs("local")] == ["a"]
    assert [e["kind"] for e in store.recent_events(1)] == [EventKind.SCHEDULE_REFUSED.value]
    store.close()


def test_the_last_good_copy_survives_a_restart_with_a_bad_file(tmp_path: Path) -> None:
    config, store, schedule = setup(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}")
    good = schedule.local.version
    store.close()
    (tmp_path / "schedule.yaml").write_text(BAD)
    store = Store.open(config.storage.dir)
    restarted = Schedule(config)
    restarted.load(store)
    assert [item.id for item in restarted.items] == ["a"]
    assert restarted.local.from_store and restarted.local.version == good
    status = restarted.status()["origins"]["local"]
    assert status["source"] == "store (last good copy)" and status["version"] == good
    assert status["error"].startswith("schedule file refused (2 problems): ")
    store.close()


def test_each_origin_keeps_its_own_last_good_copy(tmp_path: Path) -> None:
    _config, store, schedule = setup(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}")
    central = {"m1": {"id": "m1", "audio": "m1.mp3", "at": "2026-12-01T07:00:00+07:00"}}
    store.replace_schedule(central, "manifest 17", origin="central", version="17")
    assert [spec["id"] for spec in store.schedule_specs("local")] == ["a"]
    assert [spec["id"] for spec in store.schedule_specs("central")] == ["m1"]
    assert store.schedule_origin("central")["version"] == "17"
    write_schedule(tmp_path)  # the local file empties: the central copy is untouched
    assert schedule.reload(store).accepted
    assert list(store.schedule_specs("local")) == []
    assert [spec["id"] for spec in store.schedule_specs("central")] == ["m1"]
    store.close()


def test_the_schedule_is_the_union_of_origins_and_a_clashing_id_plays_once(tmp_path: Path) -> None:
    config, store, schedule = setup(tmp_path, "{id: a, audio: a.wav, at: '2026-12-01T06:30:00+07:00'}")
    raw = {
        "items": [
            {"id": "a", "audio": "other.mp3", "at": "2026-12-01T08:00:00+07:00"},
            {"id": "m1", "audio": "m1.mp3", "at": "2026-12-01T07:00:00+07:00"},
        ]
    }
    items, problems = parse_items(raw, config.device.timezone, frozenset(config.all_zones))
    assert problems == []
    schedule.origins.append(Origin("central", "manifest 17", items, "17"))
    schedule._merge(store)  # what the link will do after accepting a manifest
    by_id = {item.id: item for item in schedule.items}
    assert sorted(by_id) == ["a", "m1"]
    assert schedule.origin_of(by_id["a"]) == "local" and by_id["a"].audio == "a.wav"
    assert schedule.origin_of(by_id["m1"]) == "central"
    # audio of each origin is found in its own place
    assert schedule.audio_path(by_id["a"]) == tmp_path / "a.wav"
    assert schedule.audio_path(by_id["m1"]) == config.storage.dir / "audio" / "m1.mp3"
    clash = store.recent_events(1)[0]
    assert (
        clash["kind"] == "schedule.refused" and "'a' of central is already used by local" in clash["detail"]
    )
    assert schedule.status()["origins"]["central"]["version"] == "17"
    crew = Item("local-command-x", "/srv/x.wav", at=items[0].at)  # loa play: in no origin
    assert schedule.origin_of(crew) == COMMAND_ORIGIN
    assert schedule.audio_path(crew) == Path("/srv/x.wav")
    store.close()


def test_loa_status_shows_origin_version_and_source_through_a_restart(tmp_path: Path) -> None:
    tone_file(tmp_path, 440, 0.5)
    schedule = write_schedule(tmp_path, f"{{id: news, audio: tone-440Hz-0.5s.wav, at: '{at(6.0)}'}}")
    version = file_version(schedule)
    config = write_config(tmp_path)
    with running_agent(config):
        live = loa_status(config)
    assert schedule_line(live.stdout) == f"schedule 1 items: local 1 (version {version}, from {schedule})"
    offline = loa_status(config)
    assert schedule_line(offline.stdout) == (
        f"schedule 1 items: local 1 (version {version}, from store (last good copy))"
    )
    schedule.write_text(BAD)  # a technician's typo, then a power cut
    with running_agent(config) as box:
        restarted = loa_status(config)
        box.wait_for(lambda: box.outcome("news") == "completed", timeout=10)  # the last good copy plays
    lines = restarted.stdout.splitlines()
    line = schedule_line(restarted.stdout)
    assert line == f"schedule 1 items: local 1 (version {version}, from store (last good copy))"
    refused = lines[lines.index(line) + 1].strip()
    assert refused.startswith("schedule file refused (2 problems): ") and "schedule.yaml:2" in refused
