"""``loa-agent``: the daemon.  Wires every subsystem in one place.

    loa-agent --config /etc/loa/agent.yaml check-config   # exit 0 valid, 2 with every problem
    loa-agent --config /etc/loa/agent.yaml run            # refuses an invalid config the same way

Subsystems start in dependency order (instance lock, store, clock trust, GPIO, player, schedule,
health monitor, agent loop, command handler and control socket) and stop in reverse in
``finally``, so relays are opened whatever happens.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent.clock_trust import ClockTrust
from agent.commands import CommandHandler
from agent.config import Config, load_config
from agent.control import ControlServer, front_end
from agent.events import EventKind
from agent.health import HealthMonitor
from agent.heap_trim import return_freed_heap
from agent.instance_lock import InstanceLock
from agent.runtime import Agent, Reload
from agent.schedule_source import Schedule, check_audio
from agent.store import Store
from agent.systemd_notify import Notifier
from agent.version import VERSION
from drivers.gpio import AmplifierRelays, LedCode, StatusLed, make_pin_factory
from drivers.modem import Modem
from drivers.player import Player, make_player
from foundation.errors import LoaError, ScheduleError, report

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.central_sync import CentralSync
    from agent.fm_relay import FmRelay

logger = logging.getLogger("agent")

DEFAULT_CONFIG = Path("/etc/loa/agent.yaml")


def setup_logging(level: str) -> None:
    # journald stamps each line itself; a terminal gets timestamps.
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, force=True)


def check_schedule_file(config: Config) -> None:
    """Validate the schedule file the config names and that its audio files are there; raise with
    every problem.

    Only ``check-config`` does this: the running agent refuses a bad schedule file by itself and
    keeps the last good schedule, so a technician's typo never silences a box at its next start.
    """
    path = config.schedule.file
    if path is None:
        return
    if not path.exists():
        raise ScheduleError([f"{config.source}: schedule.file: {path} does not exist"])
    check_audio(path, config.device.timezone, frozenset(config.all_zones))


def run(
    config: Config,
    stop: threading.Event,
    on_agent: Callable[[Agent], None] | None = None,
    clock: ClockTrust | None = None,
) -> None:
    """Run the agent until ``stop`` is set; ``on_agent`` sees it once wired (tests, demo)."""
    notifier = Notifier()
    with ExitStack() as stack:
        lock = InstanceLock(config.storage.dir, config.control.socket.parent)
        lock.acquire()
        stack.callback(lock.release)
        store = Store.open(config.storage.dir)
        stack.callback(store.close)
        keys = signing_keys(config)  # read once, for the clock, the manifests and the commands
        clock = clock or _clock_trust(config, stack, keys)
        if clock.central is not None and clock.record is None:
            clock.record = store.add_event  # called from the main loop, the store's one writer
        factory = make_pin_factory(config.gpio.pin_factory)
        amplifiers = [(a.name, a.pin, a.active_high) for a in config.gpio.amplifiers]
        relays = AmplifierRelays(amplifiers, factory)
        stack.callback(relays.close)
        led = StatusLed(config.gpio.status_led, factory) if config.gpio.status_led is not None else None
        if led is not None:
            led.show(LedCode.STARTING)
            stack.callback(led.close)
        events: queue.Queue[object] = queue.Queue()  # the agent's inbox; drivers post to it
        player = make_player(config.audio.backend, config.audio.vlc_args, events.put)
        player.start()
        stack.callback(player.close)
        fm = _start_fm(config, events, factory, stack, player, store)
        schedule = Schedule(config)
        schedule.load(store)
        modem = config.health.modem
        health = HealthMonitor(
            config, store, factory=factory, modem=Modem(modem.port, baudrate=modem.baud) if modem else None
        )
        health.start()
        stack.callback(health.close)
        # the central origin: its stored manifest joins the schedule
        central = _central_sync(config, store, schedule, events, keys)
        agent = Agent(
            config,
            store=store,
            player=player,
            relays=relays,
            led=led,
            clock=clock,
            schedule=schedule,
            notifier=notifier,
            events=events,
            fm=fm,
            health=health,
        )
        commands = CommandHandler(
            agent.post, zones=frozenset(config.all_zones), status=agent.status, storage=config.storage.dir
        )
        control = ControlServer(config.control.socket, front_end(commands))
        control.start()
        stack.callback(control.stop)
        if config.central is not None:
            from agent.link import Link  # paho only on boxes with a central link
            from agent.telemetry import on_battery

            agent.link = Link(config, config.central, store, commands, agent.post, keys)
            agent.link.telemetry.add_provider("health", health.readings)
            if config.health.mains is not None:
                agent.link.telemetry.use_power(lambda: on_battery(health.readings()))
            if central is not None:
                agent.link.telemetry.use_cache(central.downloads.status)
            agent.link.sync = central
            agent.link.start()
            stack.callback(agent.link.stop)
        if central is not None:
            agent.central = central
            central.start()
            stack.callback(central.stop)
        stack.callback(notifier.stopping)
        if on_agent is not None:
            on_agent(agent)
        install_signals(stop, agent)
        agent.run(stop, on_ready=lambda: _ready(notifier))
    logger.info("agent stopped")


def _ready(notifier: Notifier) -> None:
    return_freed_heap()  # start-up's freed heap, before the idle hours (agent/heap_trim.py)
    notifier.ready(f"loa {VERSION} running")


def signing_keys(config: Config) -> list[Ed25519PublicKey]:
    """The central server's public keys (``central.signing_public_key_files``); none without a link."""
    if config.central is None:
        return []
    from agent.link import load_signing_keys  # the keys only on boxes with a central link

    return load_signing_keys(config.central, config.source)


def _clock_trust(config: Config, stack: ExitStack, keys: list[Ed25519PublicKey]) -> ClockTrust:
    """Clock trust from NTP, and from the central server's signed time when it has an api_url."""
    central = config.central
    if central is None or central.api_url is None or not config.clock.require_sync:
        return ClockTrust(config.clock.require_sync)
    from agent.central_time import CentralTime  # requests only on linked boxes

    clock = ClockTrust(True)
    clock.central = CentralTime(
        central.api_url, config.device.id, keys,
        max_round_trip=central.time_max_round_trip, tolerance=central.time_tolerance,
        set_clock=central.time_set_clock, ntp_synced=clock.ntp_vouches,
    )  # fmt: skip
    clock.central.start()
    stack.callback(clock.central.stop)
    return clock


def _central_sync(
    config: Config,
    store: Store,
    schedule: Schedule,
    events: queue.Queue[object],
    keys: list[Ed25519PublicKey],
) -> CentralSync | None:
    """The central origin (manifest, audio cache), made before the agent so that the last good
    manifest in the store is in the engine's first schedule; its threads start later."""
    if config.central is None:
        return None
    from agent.central_sync import CentralSync  # requests only on boxes with a central link

    return CentralSync(config, config.central, store, schedule, events.put, keys=keys)


def _start_fm(
    config: Config,
    events: queue.Queue[object],
    factory: object,
    stack: ExitStack,
    player: Player,
    store: Store,
) -> FmRelay | None:
    """The FM relay, if configured.  FM is a fallback: if it cannot start, the agent runs without it."""
    if config.fm.backend == "none":
        return None
    from agent.fm_relay import SOURCE_RELAY, FmRelay  # numpy and scipy only on boxes that relay FM

    try:
        source_relay = None
        if config.fm.backend == "serial":
            source_relay = AmplifierRelays([(SOURCE_RELAY, config.fm.serial.audio_relay_pin, True)], factory)
            stack.callback(source_relay.close)
        fm = FmRelay(config, events.put, player=player, store=store, source_relay=source_relay)
        fm.start()
    except LoaError as exc:
        logger.error("FM relay unavailable, running without it: %s", exc)
        store.add_event(EventKind.FM_UNAVAILABLE, str(exc))
        return None
    stack.callback(fm.stop)
    return fm


def install_signals(stop: threading.Event, agent: Agent) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        agent.post(None)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: agent.post(Reload()))
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loa-agent", description="Loa loudspeaker controller agent")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (%(default)s)")
    parser.add_argument("--version", action="version", version=f"loa-agent {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate the config and its schedule file, then exit")
    check.add_argument(
        "--config-only",
        action="store_true",
        help="only what 'run' refuses (the unit's ExecStartPre): not the schedule file",
    )
    sub.add_parser("run", help="run the agent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "check-config":
            if not args.config_only:
                check_schedule_file(config)
            print(f"{args.config}: valid")
            return 0
        setup_logging(config.logging.level)
        logger.info("loa-agent %s starting (device %s)", VERSION, config.device.id)
        run(config, threading.Event())
        return 0
    except LoaError as exc:
        return report("loa-agent", exc)


if __name__ == "__main__":
    sys.exit(main())
