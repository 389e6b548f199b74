"""Engines and sessions for SQLite (the default) and PostgreSQL.

SQLite gets WAL (readers never block the writer), a busy timeout instead of
instant ``database is locked`` errors, and connections usable from worker threads
(ingest applies batches in ``asyncio.to_thread``). Writers should use
``writer(engine)``: on SQLite it starts transactions with ``BEGIN IMMEDIATE`` so that
two writers queue on the lock instead of failing when one upgrades a read lock
(``SQLITE_BUSY_SNAPSHOT`` is not retried by the busy handler).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for the lock before giving up (ms). Ingest batches
# commit in well under a second; 30 s rides out a slow disk or a long API write.
SQLITE_BUSY_TIMEOUT_MS = 30_000
_IMMEDIATE = "sf_sqlite_immediate"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: after a database restart, pooled connections are dead; test first.
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database, not one per thread
    engine = create_engine(parsed, echo=echo, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that its SQLite transactions take the write lock first."""
    return engine.execution_options(**{_IMMEDIATE: True})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite opens transactions behind SQLAlchemy's back (and never for SELECT);
    # switching that off lets the "begin" hook below emit BEGIN itself. This is the
    # recipe from SQLAlchemy's pysqlite "Serializable isolation" notes.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        # the busy handler first: switching to WAL takes the lock too, and a second
        # process creating the database at the same moment must wait, not fail
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
