"""``loa-central serve``: the embedded broker, the MQTT link and ingest, then the HTTP server.

Subsystems start in dependency order and stop in reverse in ``finally``: database and signing key,
the build of indexes an older version's database lacks (PostgreSQL: beside ingest, see
db.add_later_indexes), broker (embedded) → the sweep of what removed boxes left retained
(central.notice_sweep) → link → ingest → retention (its first pass once those indexes are built)
→ uvicorn, which runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import ExitStack

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from central import broker, db
from central.app import create_app
from central.audio_store import AudioStore
from central.config import CentralServerConfig
from central.context import Central
from central.ingest import Ingestor, IngestThread
from central.mqtt_link import CentralLink
from central.notice_sweep import NoticeSweep
from central.retention import Pruner, PruneThread
from central.signing import load_signing_key
from central.tts import EspeakNg
from foundation.errors import LoaError

logger = logging.getLogger(__name__)


class ServeError(LoaError, OSError):
    """A subsystem of the running server stopped by itself."""

    exit_code = 4


def serve(config: CentralServerConfig) -> None:
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    key = load_signing_key(config.signing_key_file)
    engine = db.open_engine(config.database_url, defer_indexes=True)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        indexed = start_index_build(engine)
        if config.mqtt.embedded:
            broker.write_files(config, engine)
            supervisor = broker.BrokerSupervisor(config)
            supervisor.start()
            stack.callback(supervisor.stop)
        at = broker.central_endpoint(config)
        link = CentralLink(at.host, at.port, username=at.username, password=at.password)
        sweep = NoticeSweep(engine, link)
        link.on_up = sweep.link_up  # before the link starts: its first connection is swept too
        sweep.start()
        stack.callback(sweep.stop)
        link.start()
        stack.callback(link.stop)
        central = Central(config, engine, key, link, AudioStore(config.audio_dir, config.audio_max_bytes),
                          EspeakNg(config.tts_voice))  # fmt: skip
        ingest = IngestThread(Ingestor(engine, central.clock), link.inbox, link.done)
        ingest.start()
        stack.callback(ingest.stop)
        retention = PruneThread(Pruner(engine, config.retention, central.clock), after=indexed)
        retention.start()
        stack.callback(retention.stop)
        _run_http(create_app(central), config)
    logger.info("loa-central stopped")


def start_index_build(engine: Engine) -> threading.Event:
    """Build the indexes a database made by an older version lacks, on a thread of its own, so that
    ingest runs meanwhile (CREATE INDEX CONCURRENTLY); set when done.  A stop cuts a build short:
    the next start builds it again."""
    done = threading.Event()
    if engine.dialect.name != "postgresql":  # open_engine built them: SQLite has one writer anyway
        done.set()
        return done

    def build() -> None:
        try:
            db.add_later_indexes(engine)
        except Exception:  # the database is away: retention runs without them, the next start tries
            logger.exception("database: building the indexes failed; the next start tries again")
        finally:
            done.set()

    threading.Thread(target=build, name="index-build", daemon=True).start()
    return done


def _run_http(app: FastAPI, config: CentralServerConfig) -> None:
    """uvicorn on its own thread until SIGTERM or SIGINT; the main thread keeps the signals, so that
    the subsystems behind it are stopped in order (uvicorn on the main thread re-raises the signal
    after its own shutdown, which would leave the broker running)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    server = uvicorn.Server(uvicorn.Config(app, host=config.http.host, port=config.http.port,
                                           log_level=config.log_level, access_log=False))  # fmt: skip
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    logger.info("loa-central serving on %s:%d", config.http.host, config.http.port)
    while not stop.wait(1.0):
        if not thread.is_alive():
            raise ServeError(
                f"the HTTP server stopped by itself (is {config.http.host}:{config.http.port} free?)"
            )
    server.should_exit = True
    thread.join(timeout=30)
