"""Engines and column types shared by the primary and tracking databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlalchemy.types import TypeDecorator

from geo_sync.errors import ConfigError


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC: the only clock geo-sync stores."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use geo_sync.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the sqlite3 module so _sqlite_begin decides
    # between a deferred and an immediate BEGIN (the documented SQLAlchemy recipe).
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the single writer; busy_timeout makes writers queue
    # instead of failing at once when another process holds the write lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY when
    # another writer got in between; writers therefore take the lock up front.
    immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_WRITE_OPTION = "geo_sync_write"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN."""
    with engine.connect() as plain, write_on(plain) as conn:
        yield conn


@contextmanager
def write_on(conn: Connection) -> Iterator[Connection]:
    """A transaction that will write, on a connection that may have read already (its
    read transaction ends first): on SQLite it takes the write lock at BEGIN; later
    transactions on ``conn`` are plain ones again (a reader holds no write lock)."""
    if conn.in_transaction():
        conn.commit()
    conn.execution_options(**{_WRITE_OPTION: True})
    try:
        with conn.begin():
            yield conn
    finally:
        conn.execution_options(**{_WRITE_OPTION: False})


def make_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True,
                pooled: bool = True) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs. ``pre_ping``
    off saves a round trip per checkout where a failed request is retried anyway (the
    Geo API: a secondary retries, and the pool drops every connection on the first
    disconnect it sees). ``pooled`` off opens a PostgreSQL connection per checkout and
    closes it after: for a holder that keeps the engine long but uses it rarely (the
    tests' own engines beside the daemons), so it keeps no server connection idle."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if not pooled:
        return create_engine(url, poolclass=NullPool)
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=pre_ping)


def is_postgres(engine_or_dialect: Engine | Dialect) -> bool:
    """True when talking to PostgreSQL (the production backend)."""
    dialect = getattr(engine_or_dialect, "dialect", engine_or_dialect)
    return str(dialect.name) == "postgresql"


def require_reachable(url: str) -> None:
    """Connect once to ``url`` or raise a ConfigError saying what to do: `init` commands
    call this before they write anything, so a wrong URL leaves nothing behind."""
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        name = make_url(url).database
        if "does not exist" in reason and not url.startswith("sqlite"):
            hint = (f"create the database first (e.g. `createdb {name}` or "
                    f"CREATE DATABASE \"{name}\"), then run init again; nothing was written")
        elif url.startswith("sqlite"):
            hint = "create the database file's directory or fix --database-url; nothing was written"
        else:
            hint = ("check that the database server is running and the URL's host, port, user "
                    "and password are right; nothing was written")
        raise ConfigError(f"cannot use database {make_url(url).render_as_string()}: {reason}",
                          hint=hint) from None
    finally:
        engine.dispose()
