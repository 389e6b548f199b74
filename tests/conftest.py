"""Shared fixtures: real Mosquitto brokers and real SQLite / PostgreSQL databases."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import Mosquitto, Postgres

_db_counter = itertools.count()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[[], Mosquitto]]:
    """Start as many independent brokers as a test needs; all are stopped after it."""
    brokers: list[Mosquitto] = []

    def make(extra_conf: str = "") -> Mosquitto:
        broker = Mosquitto(workdir=tmp_path / f"mosquitto-{len(brokers)}", extra_conf=extra_conf)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[[], Mosquitto]) -> Mosquitto:
    """One real Mosquitto broker on a free loopback port (restartable, persistent)."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    with tempfile.TemporaryDirectory(prefix="sf-pg-") as tmp:
        server = Postgres(workdir=Path(tmp) / "pg")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    server: Postgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"sf_test_{next(_db_counter)}_{tmp_path.name[-8:].lower()}")
