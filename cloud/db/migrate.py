"""Run the packaged Alembic migrations programmatically (``upgrade(url)``).

The API and ingest both call this at start, so a fresh SQLite file or an empty
PostgreSQL database just works. Several processes may start at once: PostgreSQL
serialises them with an advisory lock, SQLite with ``BEGIN IMMEDIATE``; DDL is
transactional on both, so the loser sees the winner's finished schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from cloud.db.engine import make_engine, writer

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# An arbitrary constant naming "storefleet schema migration" in pg_advisory_xact_lock.
_PG_LOCK_KEY = 0x5F_C10D_0001


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(url: str | Engine, *, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``url`` (a URL string or an existing engine)."""
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if isinstance(url, str):
            engine.dispose()
    logger.info("database schema at %s", revision)
