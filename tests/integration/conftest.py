"""Fixtures for whole-system tests: a cloud broker, a store-local broker, a database,
and the real ``storefleet`` processes (ingest, API, agent) started as subprocesses."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.cluster_services import RabbitCluster
from tests.integration.harness import Proc
from tests.services import Mosquitto, free_port

STORE = "S001"


@dataclass
class Stack:
    """Everything one store and its cloud need, wired together."""

    tmp: Path
    db_url: str
    cloud_broker: Mosquitto
    local_broker: Mosquitto
    procs: list[Proc] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    api_port: int = field(default_factory=free_port)
    agent_metrics_port: int = field(default_factory=free_port)
    _engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.db_url, pool_pre_ping=True)
        return self._engine

    def proc(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name=name, args=args, logdir=self.tmp / "logs", env=env or {})
        self.procs.append(p)
        return p

    def ingest(self, client_id: str = "ingest-test-1") -> Proc:
        return self.proc(
            f"ingest-{client_id}",
            [
                "cloud",
                "ingest",
                "--db",
                self.db_url,
                "--mqtt",
                self.cloud_broker.url,
                "--client-id",
                client_id,
                "--metrics-port",
                "0",
            ],
        )

    def api(self, *, ingest: bool = True) -> Proc:
        return self.proc(
            "api",
            [
                "cloud",
                "serve",
                "--port",
                str(self.api_port),
                "--db",
                self.db_url,
                "--mqtt",
                self.cloud_broker.url,
                "--ingest" if ingest else "--no-ingest",
                "--dev",
                "--log-level",
                "warning",
            ],
            env={
                "STOREFLEET_API_TOKENS": f"{self.token}:hq-admin",
                "STOREFLEET_INGEST_CLIENT_ID": "api-ingest",
            },
        )

    def agent(self, *, keepalive_s: int = 10) -> Proc:
        conf = self.tmp / "agent.toml"
        conf.write_text(f"[agent]\nkeepalive_s = {keepalive_s}\nreconnect_max_s = 2.0\n")
        return self.proc(
            "agent",
            [
                "edge",
                "run",
                "--store",
                STORE,
                "--cloud",
                self.cloud_broker.url,
                "--local-bus",
                self.local_broker.url,
                "--data-dir",
                str(self.tmp / "edge"),
                "--metrics-port",
                str(self.agent_metrics_port),
                "--config",
                str(conf),
            ],
        )

    # ---- what the cloud database holds -------------------------------------------

    def stored_ids(self) -> list[str]:
        try:
            with self.engine.connect() as conn:
                return [r[0] for r in conn.execute(sa.text("SELECT id FROM events"))]
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # tables not migrated yet
            return []

    def store_row(self) -> dict[str, Any] | None:
        try:
            with self.engine.connect() as conn:
                row = (
                    conn.execute(
                        sa.text("SELECT online, bd_seq FROM stores WHERE store_id = :s"),
                        {"s": STORE},
                    )
                    .mappings()
                    .first()
                )
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            return None
        return dict(row) if row else None

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


@pytest.fixture
def stack(
    tmp_path: Path, db_url: str, mosquitto_factory: Callable[[], Mosquitto]
) -> Iterator[Stack]:
    s = Stack(
        tmp=tmp_path,
        db_url=db_url,
        cloud_broker=mosquitto_factory(),
        local_broker=mosquitto_factory(),
    )
    yield s
    for p in reversed(s.procs):
        p.terminate(timeout=10)
    s.dispose()


async def wait_for(
    pred: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.25
) -> float:
    """Poll ``pred`` (in a thread: it may query the database) without blocking the loop.
    Returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout:
        if await asyncio.to_thread(pred):
            return loop.time() - start
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes clustered (``tests.cluster_services``), for one test module."""
    c = RabbitCluster(Path(tmp_path_factory.mktemp("rabbit")))
    c.start()
    try:
        yield c
    finally:
        c.stop()
