"""``kill -9`` of the agent while lane terminals sell over HTTP: every sale a lane got an
answer for reaches the cloud's broker after the restart (the ledger, then the outbox,
both fsynced before the answer; a sale caught between them is re-emitted at start).

Real parts: the agent process (``python -m edge_agent run``) with ``[till.lanes]``, its
SQLite ledger and outbox, Mosquitto for the uplink and the store bus, and four lanes
selling concurrently over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
from pathlib import Path

import httpx
import pytest

from bench.till import catalog, lanes_of, publication
from cloud.promotions.service import store_document
from cloud.promotions.signing import SnapshotSigner, raw_public
from protocols import topics
from tests.edge_agent.helpers import agent_process, watch
from tests.integration.test_retail_e2e import until
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

STORE = "s1"
LANES = 4
BEFORE_KILL = 30  # sales answered before the kill; the lanes keep selling through it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision(data: Path, conf: Path, lanes: list[dict[str, str]], port: int) -> None:
    """A box that can sell with the cloud away: the signed snapshot and the catalog in
    its till cache, the snapshot's key trusted, the lanes configured."""
    signer = SnapshotSigner.generate()
    (data / "pos").mkdir(parents=True)
    (data / "pos" / "promotions.json").write_text(
        json.dumps(store_document(publication(), STORE, signer)))
    (data / "pos" / "catalog.json").write_text(catalog().model_dump_json())
    key = base64.b64encode(raw_public(signer.public_key)).decode()
    lane_toml = "".join(f'\n[[till.lanes.lane]]\nid = "{lane["id"]}"\n'
                        f'token = "{lane["token"]}"\n' for lane in lanes)
    conf.write_text(f'[agent]\nawait_cloud_ready = false\n\n[till]\ntrusted_keys = ["{key}"]'
                    f'\n\n[till.lanes]\nhost = "127.0.0.1"\nport = {port}\n{lane_toml}')


async def lane(url: str, token: str, n: int, answered: list[str],
               stop: asyncio.Event) -> None:
    """Sell until ``stop`` or the box goes away; ``answered``: the sales completed."""
    async with httpx.AsyncClient(base_url=url, timeout=5,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        k = 0
        while not stop.is_set():
            try:
                bid = (await http.post("/till/v1/baskets")).json()["basket_id"]
                base = f"/till/v1/baskets/{bid}"
                for i in range(3):
                    r = await http.post(f"{base}/items",
                                        json={"code": f"sku-{(n * 31 + k + i) % 500:05d}"})
                    assert r.status_code == 200, r.text
                await http.put(f"{base}/tender", json={"method": "card"})
                r = await http.post(f"{base}/complete")
            except httpx.TransportError:
                return  # the box was killed
            assert r.status_code == 200, r.text
            answered.append(r.json()["sale_id"])
            k += 1


async def test_kill9_while_lanes_sell_loses_no_answered_sale(
        tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:
    data, conf, log = tmp_path / "agent", tmp_path / "agent.toml", tmp_path / "agent.log"
    spec, port = lanes_of(LANES), free_port()
    provision(data, conf, spec, port)
    url = f"http://127.0.0.1:{port}"
    answered: list[str] = []

    async def lane_up() -> bool:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                r = await http.get("/till/v1/lane",
                                   headers={"Authorization": f"Bearer {spec[0]['token']}"})
                return r.status_code == 200
        except httpx.TransportError:
            return False

    async with watch(uplink_broker, STORE) as seen:
        def arrived() -> set[str]:
            return {json.loads(p)["id"] for p in seen.on(topics.evt(STORE, "sale"))}

        with agent_process(store_id=STORE, conf=conf, cloud_url=uplink_broker.url,
                           local_url=local_broker.url, data_dir=data, log=log) as first:
            await until(lane_up, timeout=60, what="the lanes' till listening")
            stop = asyncio.Event()
            sellers = [asyncio.create_task(lane(url, s["token"], n, answered, stop),
                                           name=f"test-lane-{n}")
                       for n, s in enumerate(spec)]
            await until(lambda: len(answered) >= BEFORE_KILL, timeout=60,
                        what=f"{BEFORE_KILL} sales answered")
            first.send_signal(signal.SIGKILL)  # mid-stream: lanes are selling right now
            first.wait(5)
            stop.set()
            await asyncio.gather(*sellers)
        killed_with = len(answered)
        assert killed_with >= BEFORE_KILL

        with agent_process(store_id=STORE, conf=conf, cloud_url=uplink_broker.url,
                           local_url=local_broker.url, data_dir=data, log=log):
            await until(lambda: set(answered) <= arrived(), timeout=60,
                        what="every answered sale at the cloud's broker")
            await until(lane_up, timeout=30, what="the lanes' till back")
            # and the restarted box sells on: the next sale gets a new number
            stop = asyncio.Event()
            more: list[str] = []
            seller = asyncio.create_task(lane(url, spec[0]["token"], 9, more, stop),
                                         name="test-lane-after")
            await until(lambda: len(more) >= 1, timeout=30, what="a sale after the restart")
            stop.set()
            await seller
            await until(lambda: set(more) <= arrived(), timeout=30, what="its event")
    assert len(set(answered)) == killed_with
