"""Shared fixtures: real Mosquitto brokers and real SQLite / PostgreSQL databases."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import Mosquitto, Postgres

_db_counter = itertools.count()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` (scripts/test.sh) runs the tests of one ``xdist_group`` on one
    worker, one after the other: the demo and the README's steps need the same fixed
    ports, and two RabbitMQ clusters at once do not form on two cores. pytest-xdist 3.8
    marks a group by appending ``@<group>`` to ``item._nodeid``, which pytest 9 no longer
    reads (the id is ``item._id``): without this hook the groups were silently ignored
    and such tests ran side by side. Does what xdist means to, on the id pytest 9 uses."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)  # type: ignore[attr-defined]


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
