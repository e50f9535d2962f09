"""Run the real agent (daemon wiring, store, scheduler, players, gpiozero MockFactory) in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.clock_trust import ClockTrust
from agent.config import Config, load_config
from agent.daemon import run
from agent.runtime import Agent
from agent.store import PlayRecord, Store


def at(seconds: float) -> str:
    """An ISO instant ``seconds`` from now, with its UTC offset, in the device's zone (+07:00)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).isoformat(timespec="milliseconds")


def write_config(
    directory: Path,
    *,
    backend: str = "null",
    vlc_args: list[str] | None = None,
    preroll: str = "1s",
    postroll: str = "1s",
    require_sync: bool = False,
    catch_up: str | None = None,
    extra: str = "",
) -> Path:
    args = vlc_args or []
    catch_up_key = f", catch_up: {catch_up}" if catch_up is not None else ""
    text = f"""
device: {{id: test-box-01, timezone: Asia/Ho_Chi_Minh}}
storage: {{dir: state}}
audio: {{backend: {backend}, vlc_args: {args!r}, volume: 100}}
gpio:
  pin_factory: mock
  amplifiers: [{{name: zone-1, pin: 17}}, {{name: zone-2, pin: 18}}]
  preroll: {preroll}
  postroll: {postroll}
  status_led: 27
schedule: {{file: schedule.yaml{catch_up_key}}}
clock: {{require_sync: {str(require_sync).lower()}}}
control: {{socket: agent.sock}}
{extra}
"""
    path = directory / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_schedule(directory: Path, *items: str) -> Path:
    path = directory / "schedule.yaml"
    body = "".join(f"  - {item}\n" for item in items) if items else "  []\n"
    path.write_text("items:\n" + body if items else "items: []\n", encoding="utf-8")
    return path


@dataclass
class RunningAgent:
    config: Config
    agent: Agent
    stop: threading.Event

    def wait_for(self, what: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s; play log: {self.play_log()}")

    def wait_passes(self, n: int, timeout: float) -> None:
        """Wait until the main loop has made ``n`` more passes than it had made when called.

        The first of them may have begun before the call: ask for two to be sure one whole pass
        saw the world as it is now (the loop runs at least once a second).
        """
        target = self.agent.passes + n
        self.wait_for(lambda: self.agent.passes >= target, timeout)

    def play_log(self) -> list[PlayRecord]:
        store = Store.open_readonly(self.config.storage.dir)
        try:
            return store.play_log()
        finally:
            store.close()

    def outcome(self, item_id: str) -> str | None:
        rows = [r for r in self.play_log() if r.item_id == item_id]
        return rows[-1].outcome if rows else None


@contextmanager
def running_agent(config_path: Path, clock: ClockTrust | None = None) -> Iterator[RunningAgent]:
    config = load_config(config_path)
    stop = threading.Event()
    ready: list[Agent] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run(config, stop, on_agent=ready.append, clock=clock)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="agent-under-test")
    thread.start()
    deadline = time.monotonic() + 10
    while not ready and not failure and time.monotonic() < deadline:
        time.sleep(0.01)
    if failure:
        raise failure[0]
    assert ready, "agent did not start within 10 s"
    try:
        yield RunningAgent(config, ready[0], stop)
    finally:
        stop.set()
        ready[0].post(None)
        thread.join(timeout=15)
        assert not thread.is_alive(), "agent did not stop within 15 s"
        if failure:
            raise failure[0]
