"""The central server's tables: SQLAlchemy 2 Core, one code path for SQLite and PostgreSQL.

Units form a tree whose levels are data (``province``, ``commune``, ``district`` for old records):
nothing in the code knows how many levels there are.  Times are stored as UTC (:class:`UtcDateTime`)
and come back timezone-aware on both databases.  Records a box sends are unique by their id within
their stream, so ingest is idempotent: a record sent twice is stored once
(:func:`insert_ignoring_duplicates`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.dml import Insert

logger = logging.getLogger(__name__)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as naive UTC: SQLite keeps no offset, so neither database gets one."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

ID = 64  # device ids, unit ids, group names: [a-z0-9-]{3,64}
SHA = 64

units = Table(
    "units",
    metadata,
    Column("id", String(ID), primary_key=True),  # a slug such as xa-quang-son: also its MQTT group
    Column("parent", String(ID), ForeignKey("units.id"), nullable=True, index=True),
    Column("name", String(200), nullable=False),  # as people write it: "Xã Quảng Sơn"
    Column("level", String(32), nullable=False),  # data: province, commune, district, ...
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("unit", String(ID), ForeignKey("units.id"), nullable=False, index=True),
    Column("groups", JSON, nullable=False),  # the MQTT groups it takes commands from: its unit's ancestry
    Column("created_at", UtcDateTime, nullable=False),
    # what the box last said: status (online/offline with its session), state, telemetry
    Column("online", Boolean, nullable=False, default=False),
    Column("session", BigInteger, nullable=True),
    Column("last_seen", UtcDateTime, nullable=True),
    Column("state", JSON, nullable=True),
    Column("state_at", UtcDateTime, nullable=True),
    Column("telemetry", JSON, nullable=True),
    Column("telemetry_at", UtcDateTime, nullable=True),
    # taken out of service (loa-central device remove): no broker account, no commands or manifests,
    # its messages dropped; the row and what it sent stay for the reports
    Column("removed_at", UtcDateTime, nullable=True),
)

device_credentials = Table(
    "device_credentials",
    metadata,
    Column("device_id", String(ID), ForeignKey("devices.id"), primary_key=True),
    Column("mqtt_username", String(ID), nullable=False, unique=True),
    Column("mqtt_password_hash", String(255), nullable=False),  # Mosquitto's $7$ PBKDF2-SHA512 form
    Column("created_at", UtcDateTime, nullable=False),
)

audio = Table(
    "audio",
    metadata,
    Column("sha256", String(SHA), primary_key=True),
    Column("mime", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("duration_s", JSON, nullable=False),  # a float; JSON keeps it exact on both databases
    Column("name", String(255), nullable=False),  # the uploaded file's name, or "tts"
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=True),
)

bulletins = Table(
    "bulletins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(300), nullable=False),
    Column("audio_sha256", String(SHA), ForeignKey("audio.sha256"), nullable=False),
    Column("text", Text, nullable=True),  # a text bulletin: what was synthesized into audio_sha256
    Column("level", String(16), nullable=False),  # normal | priority | emergency
    Column(
        "targets", JSON, nullable=False
    ),  # {"devices": [...]} | {"communes": [...]} | {"districts": [...]}
    Column("at", UtcDateTime, nullable=True),  # one time, or:
    Column("rrule", String(500), nullable=True),
    Column("dtstart", String(40), nullable=True),  # local wall time of the box's zone, as the schedule file
    Column("valid_from", String(40), nullable=True),
    Column("valid_until", String(40), nullable=True),
    Column("volume", Integer, nullable=True),
    Column("zones", JSON, nullable=True),
    Column("unit", String(ID), ForeignKey("units.id"), nullable=True),  # the sender's unit
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# One row per bulletin and box: offered (a higher unit's normal bulletin, waiting for the commune),
# accepted / scheduled (in the box's manifest), declined.
bulletin_targets = Table(
    "bulletin_targets",
    metadata,
    Column("bulletin_id", Integer, ForeignKey("bulletins.id"), primary_key=True),
    Column("device_id", String(ID), ForeignKey("devices.id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Index("ix_bulletin_targets_device", "device_id", "status"),
)

# A commune operator's order for two of its boxes' colliding priority bulletins (Circular 39): in
# the manifests of the commune's boxes, ``second`` starts ``shift_s`` later, as ``first`` ends.
bulletin_orders = Table(
    "bulletin_orders",
    metadata,
    Column("unit", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("first_id", Integer, ForeignKey("bulletins.id"), primary_key=True),
    Column("second_id", Integer, ForeignKey("bulletins.id"), primary_key=True),
    Column("shift_s", Integer, nullable=False),
    Column("decided_by", String(128), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("device_id", String(ID), ForeignKey("devices.id"), primary_key=True),
    Column("version", BigInteger, nullable=False),  # only grows: a box refuses a version not newer
    Column("token", Text, nullable=False),  # the signed compact JWS
    Column("etag", String(80), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(128), primary_key=True),  # the jti
    Column("type", String(32), nullable=False),
    Column("fields", JSON, nullable=False),
    Column("targets", JSON, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_commands_created", "created_at"),  # retention deletes by it
)

command_targets = Table(
    "command_targets",
    metadata,
    Column("command_id", String(128), ForeignKey("commands.id"), primary_key=True),
    Column("device_id", String(ID), ForeignKey("devices.id"), primary_key=True),
    Column("audience", String(80), nullable=False),  # the aud it was sent to: the device or group:<g>
    Column("result", String(16), nullable=True),  # the latest ack: accepted, done, rejected, duplicate
    Column("reason", String(64), nullable=True),
    Column("message", Text, nullable=True),
    Column("acked_at", UtcDateTime, nullable=True),
)

# Every ack as it came (a command may be acked accepted, then done); unique so a resend is stored once.
acks = Table(
    "acks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command_id", String(128), nullable=False),
    Column("device_id", String(ID), nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("message", Text, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("command_id", "device_id", "result", "at", name="uq_acks"),
)

# Records of the telemetry, events and playlog streams: unique by (stream, record id).
records = Table(
    "records",
    metadata,
    Column("seq_id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(16), nullable=False),
    Column("record_id", String(90), nullable=False),  # <device_id>:<seq>
    Column("device_id", String(ID), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("data", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("stream", "record_id", name="uq_records_stream_id"),
    Index("ix_records_device_stream_at", "device_id", "stream", "at"),
    Index("ix_records_stream_received", "stream", "received_at"),  # retention deletes by it
)

# The play log as reports read it: one row per occurrence (key), the record with the highest seq.
playlogs = Table(
    "playlogs",
    metadata,
    Column("device_id", String(ID), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("audio", String(300), nullable=False),
    Column("level", String(16), nullable=False),
    Column("zones", JSON, nullable=False),
    Column("scheduled_start", UtcDateTime, nullable=False),
    Column("actual_start", UtcDateTime, nullable=True),
    Column("ended", UtcDateTime, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("origin", String(64), nullable=False),
    Index("ix_playlogs_scheduled", "scheduled_start"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),  # argon2id
    Column("role", String(16), nullable=False),  # admin | operator | viewer | upstream
    Column("unit", String(ID), ForeignKey("units.id"), nullable=True),  # None: every unit (admin)
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_sha256", String(SHA), primary_key=True),  # the token itself is never stored
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("label", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("user", String(128), nullable=False),
    Column("action", String(64), nullable=False),  # login, login.failed, bulletin.create, command.send, ...
    Column("target", String(300), nullable=False),
    Column("detail", JSON, nullable=False),
)

# Wrong passwords per user name and per client address (central.login_throttle): every server
# process on the database counts here; a row with no failure for an hour is deleted.  A new table:
# create_all makes it, with its index, in a database made by an older version too.
login_failures = Table(
    "login_failures",
    metadata,
    Column("kind", String(8), primary_key=True),  # user | address
    Column("name", String(128), primary_key=True),  # the user name casefolded, or the address
    Column("failures", Integer, nullable=False),
    Column("last_at", UtcDateTime, nullable=False, index=True),  # the last failure; pruning goes by it
)


# Indexes added to tables that existing databases already have (see add_later_indexes).
LATER_INDEXES = ("ix_records_stream_received", "ix_commands_created")


def open_engine(url: str, *, defer_indexes: bool = False) -> Engine:
    """An engine for ``url`` with the tables created; SQLite in WAL mode with foreign keys on.

    Indexes a database made by an older version lacks are built here too, except on PostgreSQL with
    ``defer_indexes``: ``serve`` builds them after its start, beside ingest
    (central.server.start_index_build)."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    _add_missing_columns(engine)
    if not (defer_indexes and engine.dialect.name == "postgresql"):
        add_later_indexes(engine)
    return engine


def add_later_indexes(engine: Engine) -> None:
    """Indexes added after a release: create_all makes them only with a new table, so a database
    made before gets them here (once; on a large table this takes a while at the first start)."""
    later = [
        index for table in metadata.sorted_tables for index in table.indexes if index.name in LATER_INDEXES
    ]
    if engine.dialect.name != "postgresql":  # SQLite: one writer anyway, and the build is short
        with engine.begin() as conn:
            for index in later:
                conn.execute(CreateIndex(index, if_not_exists=True))
        return
    # CONCURRENTLY: ingest goes on writing the table while its index builds (a plain CREATE INDEX
    # would hold its writes for the whole build); it cannot run in a transaction, hence AUTOCOMMIT.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for index in later:
            _build_concurrently(conn, index)


_INDEX_VALID = text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
_INDEX_BUILDING = text(
    "SELECT count(*) FROM pg_stat_progress_create_index WHERE index_relid = to_regclass(:name)"
)


def _build_concurrently(conn: Connection, index: Index) -> None:
    """Build ``index`` on PostgreSQL without blocking writes.  An INVALID one is either being built by
    another process (left to it) or was left by an interrupted build (a crash or a stop during the
    first start): that one is dropped and built again."""
    quote = conn.dialect.identifier_preparer.quote
    name, table = quote(str(index.name)), quote(index.table.name if index.table is not None else "")
    valid = conn.execute(_INDEX_VALID, {"name": index.name}).scalar_one_or_none()
    if valid:
        return
    if valid is not None:
        if conn.execute(_INDEX_BUILDING, {"name": index.name}).scalar_one():
            logger.info("database: index %s is being built by another process", index.name)
            return
        logger.warning("database: index %s was left unfinished by an interrupted build: building it again",
                       index.name)  # fmt: skip
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
    columns = ", ".join(quote(column.name) for column in index.columns)
    logger.info("database: building index %s on %s without blocking writes", index.name, table)
    conn.execute(text(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns})"))
    logger.info("database: index %s built", index.name)


# Columns added after a table's first release: create_all makes missing tables only, so a database
# made by an older version gets each of these added on start (all nullable: old rows read as NULL).
ADDED_COLUMNS = (("devices", "removed_at"),)


def _add_missing_columns(engine: Engine) -> None:
    for table_name, column_name in ADDED_COLUMNS:
        present = {column["name"] for column in inspect(engine).get_columns(table_name)}
        if column_name in present:
            continue
        column = metadata.tables[table_name].c[column_name]
        kind = column.type.compile(dialect=engine.dialect)
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {column_name} {kind}"))
        logger.info("database: added column %s.%s", table_name, column_name)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # a power cut loses at most the last transaction
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def dialect_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` in the engine's dialect, which has ``on_conflict_do_*`` and ``excluded``."""
    return postgresql.insert(table) if engine.dialect.name == "postgresql" else sqlite.insert(table)


def insert_ignoring_duplicates(engine: Engine, table: Table, conflict: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` in the engine's dialect."""
    return dialect_insert(engine, table).on_conflict_do_nothing(index_elements=conflict)


def upsert(engine: Engine, table: Table, conflict: list[str], update: list[str], *,
           only_if_greater: str | None = None) -> Insert:  # fmt: skip
    """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET update = excluded.update``; with
    ``only_if_greater``, only when the new row's value of that column is greater than the stored one."""
    statement = dialect_insert(engine, table)
    where = (
        None if only_if_greater is None else table.c[only_if_greater] < statement.excluded[only_if_greater]
    )
    return statement.on_conflict_do_update(
        index_elements=conflict, set_={name: statement.excluded[name] for name in update}, where=where
    )
