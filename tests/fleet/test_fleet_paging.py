"""``fleet stores`` / ``fleet devices`` follow the API's cursor across pages (decision 0052).

The real console script against the real app served by uvicorn on SQLite, with rows
bulk-inserted: 1,234 devices and 612 stores are three and two pages of the API's default
500, and the API's own request counter shows the pages were separate requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import insert

from cloud.db import make_engine, upgrade
from cloud.db.models import Device, Store
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from edge_agent.cartscreen.server import EmbeddedServer
from tests.cloud.conftest import ADMIN, MANAGER_S1, make_settings
from tests.services import free_port

FLEET = Path(sys.executable).parent / "fleet"
DEVICES = 1_234
STORES = 612


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, CollectorRegistry]]:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(Store), [{"store_id": f"S{i:04d}", "online": i % 2 == 0}
                                     for i in range(STORES)])
        # s1 (MANAGER_S1's store) gets every 10th device, the rest go to S0000..S0002
        conn.execute(insert(Device), [
            {"store_id": "s1" if i % 10 == 0 else f"S{i % 3:04d}", "device_id": f"d{i:05d}",
             "kind": "cart", "online": i % 2 == 0} for i in range(DEVICES)])
    engine.dispose()
    registry = CollectorRegistry()
    app = create_app(make_settings(db_url), registry=registry, publisher=MemoryPublisher())
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    # the console script is a blocking client in another process: the server gets its
    # own thread and event loop
    thread = threading.Thread(target=server.run, name="fleet-paging-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", registry
    finally:
        server.should_exit = True
        thread.join(30)


def fleet_json(api: str, token: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFLEET_")}
    proc = subprocess.run([str(FLEET), *args, "--json", "--api", api, "--token", token],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def requests_to(registry: CollectorRegistry, route: str) -> float:
    """Requests the API counted for ``route`` (its template under /api/v1)."""
    return sum(s.value for m in registry.collect() for s in m.samples
               if s.name == "storefleet_api_requests_total" and s.labels.get("route") == route)


def test_fleet_lists_every_page(api: tuple[str, CollectorRegistry]) -> None:
    url, registry = api
    devices = fleet_json(url, ADMIN, "devices")
    keys = [(d["store_id"], d["device_id"]) for d in devices]
    assert len(keys) == DEVICES == len(set(keys)) and keys == sorted(keys)
    assert requests_to(registry, "/devices") == 3  # 500 + 500 + 234

    stores = fleet_json(url, ADMIN, "stores", "ls")
    assert [s["store_id"] for s in stores] == [f"S{i:04d}" for i in range(STORES)]
    assert requests_to(registry, "/stores") == 2

    # --limit: the first N in order, in pages of at most 500
    first = fleet_json(url, ADMIN, "devices", "ls", "--limit", "700")
    assert [(d["store_id"], d["device_id"]) for d in first] == keys[:700]
    assert requests_to(registry, "/devices") == 3 + 2
    offline = fleet_json(url, ADMIN, "stores", "--offline", "--limit", "3")
    assert [s["store_id"] for s in offline] == ["S0001", "S0003", "S0005"]

    # A store-scoped token's pages: its store only, all of it.
    mine = fleet_json(url, MANAGER_S1, "devices")
    assert len(mine) == DEVICES // 10 + 1 and {d["store_id"] for d in mine} == {"s1"}
