"""Price book to the store, end to end with real parts (decision 0015): the cloud app
(uvicorn, ingest) and Mosquitto, the real ``Agent`` with its POS, SQLite and PostgreSQL.

HQ publishes a price book -> the store box installs it (first by REST at start, then a
store override pushed over MQTT with nothing polled) -> a POS sale is priced with the
new price and records the book's version, in the till and in the cloud's sale event;
a tampered book and an older one pushed on the store's topic are refused and counted,
and the till keeps selling at the installed prices.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from cloud.db.models import Event
from cloud.promotions.signing import SnapshotSigner, raw_public
from edge_agent.app import Agent
from edge_agent.config import AgentConfig
from edge_agent.modules.till import Till
from pricing import Line
from protocols import encode, topics
from protocols.messages import PriceBookAnnouncement
from tests.cloud.conftest import ADMIN, DEVICE_S1, auth
from tests.integration.test_retail_e2e import cloud_server, until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

STORE = "s1"  # DEVICE_S1 is bound to it: the box uses a store-scoped token
CHAIN_BOOK = [{"sku": "milk", "name": "Milk 1l", "category": "dairy", "price": 199},
              {"sku": "bread", "category": "bakery", "price": 350}]


def refused(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("storefleet_pos_cache_refresh_total",
                                     {"what": "pricebook", "result": reason}) or 0.0


async def push(broker: Mosquitto, msg: PriceBookAnnouncement) -> None:
    host, port = broker.url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        await client.publish(topics.content_pricebook(STORE), encode(msg), qos=1)


async def test_price_book_published_in_the_cloud_prices_the_store_sale(
    db_url: str, mosquitto_factory: Callable[[], Mosquitto], tmp_path: Path
) -> None:
    cloud_broker, local_broker = mosquitto_factory(), mosquitto_factory()
    signer = SnapshotSigner.generate()
    engine = sa.create_engine(db_url, pool_pre_ping=True)
    agent_registry = CollectorRegistry()
    try:
        async with cloud_server(db_url, cloud_broker, signer, CollectorRegistry()) as api_url, \
                httpx.AsyncClient(base_url=api_url, headers=auth(ADMIN), timeout=10) as api:
            assert (await api.post("/api/v1/promotions/publish")).status_code == 200
            r = await api.post("/api/v1/price-books", json={"items": CHAIN_BOOK})
            assert r.status_code == 201 and r.json()["version"] == 1, r.text
            config = AgentConfig(
                store_id=STORE, data_dir=tmp_path / "agent", cloud_url=cloud_broker.url,
                local_bus=local_broker.url, metrics_port=0, keepalive_s=2,
                reconnect_min_s=0.1, reconnect_max_s=0.5, health_interval_s=0.5,
                outbox_synchronous="NORMAL", modules={"till": {
                    "cloud_api": api_url, "cloud_api_token": DEVICE_S1,
                    "refresh_interval_s": 3_600,  # nothing polled during the test: pushes only
                    "trusted_keys": [base64.b64encode(raw_public(signer.public_key)).decode()]}})
            async with Agent(config, registry=agent_registry) as agent:
                pos = agent.get(Till).pos
                await asyncio.wait_for(pos.synced.wait(), 20)
                await until(lambda: pos.pricebook.version == 1, what="book v1 installed")
                first = await pos.service.sell([Line(line_id="1", sku="milk", qty=2)])
                assert first.priced.total == 2 * 199 and first.priced.catalog_version == 1

                # HQ lowers milk at this store: pushed over MQTT, installed, used.
                r = await api.post("/api/v1/price-books", json={
                    "store_id": STORE, "items": [{"sku": "milk", "category": "dairy",
                                                  "price": 149}]})
                assert r.status_code == 201 and r.json()["version"] == 2, r.text
                await until(lambda: pos.pricebook.version == 2, what="book v2 pushed")
                sale = await pos.service.sell([Line(line_id="1", sku="milk", qty=2),
                                               Line(line_id="2", sku="bread", qty=1)])
                assert sale.priced.total == 2 * 149 + 350
                assert sale.priced.catalog_version == 2
                assert (tmp_path / "agent" / "pos" / "pricebook.json").exists()

                def stored() -> Event | None:
                    with Session(engine) as s:
                        return s.get(Event, (STORE, sale.sale_id))

                row = await until(stored, timeout=30, what="sale in the cloud")
                assert row.data["catalog"]["version"] == 2
                assert row.data["priced"]["catalog_version"] == 2
                assert row.data["catalog"]["items"]["milk"]["price"] == 149

                # A tampered book (milk at 1) on the store's topic: refused, counted.
                doc = (await api.get(f"/api/v1/stores/{STORE}/price-book")).json()
                forged = json.loads(json.dumps(doc))
                forged["payload"].update(version=3)
                forged["payload"]["catalog"].update(version=3)
                forged["payload"]["catalog"]["items"]["milk"]["price"] = 1
                await push(cloud_broker, PriceBookAnnouncement(
                    version=3, published_ms=1, key_id=doc["key_id"], path="/x",
                    document=forged))
                await until(lambda: refused(agent_registry, "signature") == 1,
                            what="tampered book refused")
                # An older genuine book replayed with a newer announcement: refused.
                old = (await api.get(f"/api/v1/stores/{STORE}/price-book",
                                     params={"version": 1})).json()
                await push(cloud_broker, PriceBookAnnouncement(
                    version=9, published_ms=1, key_id=old["key_id"], path="/x", document=old))
                await until(lambda: refused(agent_registry, "stale") == 1,
                            what="older book refused")
                assert pos.pricebook.version == 2
                again = await pos.service.sell([Line(line_id="1", sku="milk", qty=1)])
                assert again.priced.total == 149 and again.priced.catalog_version == 2
    finally:
        engine.dispose()
