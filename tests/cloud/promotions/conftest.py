"""Fixtures for promotions tests: a migrated database (SQLite file or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, make_session_factory, upgrade
from cloud.db.engine import writer
from cloud.loyalty.members import create_member
from protocols.clock import ManualClock

HASH_KEY = SecretStr("test-member-hash-key-0001")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    eng = make_engine(db_url)
    if eng.dialect.name == "postgresql":
        # One connection per racing thread (50), so the race is the database's, not the
        # pool's; PostgreSQL's default max_connections is 100.
        eng.dispose()
        eng = create_engine(db_url, pool_size=55, max_overflow=0, pool_pre_ping=True)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(writer(engine))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def new_member(sessions: sessionmaker[Session], clock: ManualClock, **kw: object) -> str:
    with sessions.begin() as s:
        return create_member(s, now_ms=clock.now_ms(), key=HASH_KEY, **kw).member_id  # type: ignore[arg-type]
