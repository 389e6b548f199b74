"""Members at the store with the broker gone (decision 0064): real Mosquitto, the real
cloud under uvicorn with ingest, a real agent with the content and members modules.

The cloud publishes the store's member snapshot in its signed content manifest; the box
authorises a spend through the cloud while online; with the broker stopped it checks
the member's code from the snapshot, authorises within the offline cap and refuses over
it; once the broker is back the outbox delivers the offline spend and the cloud's
balance is settled exactly once (also after a restart of the box sends it again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge_agent.app import Agent
from edge_agent.modules.members import Members, SpendRefused
from protocols import membercode
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.integration.test_content_offline import Cloud
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]

SECRET = "integration-member-code-secret-01"
HASH_KEY = "integration-member-hash-key-0001"


def members_of(agent: Agent) -> Members:
    module = agent.module("members")
    assert isinstance(module, Members)
    return module


async def test_member_code_and_spends_offline_settled_once(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    cloud.settings = cloud.settings.model_copy(update={
        "member_code_secret": SecretStr(SECRET), "member_hash_key": SecretStr(HASH_KEY)})
    # the real cloud answers births and acknowledges events after commit (decision 0028):
    # an offline spend leaves the outbox only once the cloud has it
    cfg = make_config(tmp_path / "box", uplink=broker, local=mosquitto_factory(),
                      await_cloud_ready=True, await_cloud_ack=True, modules={
        "content": cloud.content_settings(),
        "members": {"offline_points_cap": 300, "phone_key": HASH_KEY}})
    store = cfg.store_id
    async with cloud.serving() as http, running_agent(cfg) as agent:
        # the store is known once its birth is in; then a member of this store
        r = await http.post("/api/v1/members", json={"phone": "+49 170 5550002"})
        anna = r.json()["member_id"]
        r = await http.post(f"/api/v1/members/{anna}/points/earn",
                            json={"points": 500, "op_id": "seed"})
        assert r.status_code < 300, r.text
        for _ in range(200):
            r = await http.put(f"/api/v1/members/{anna}/home-store", json={"store_id": store})
            if r.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        r = await http.post("/api/v1/member-snapshots/publish", json={"stores": [store]})
        assert r.status_code == 201, r.text
        members = members_of(agent)
        await wait_until(lambda: members.snapshot is not None, within_s=20,
                         what="the member snapshot taken from the manifest")

        async def cloud_points() -> int:
            doc = (await http.get(f"/api/v1/members/{anna}")).json()
            return int(doc["points_balance"])

        online = await members.authorise_spend(anna, unit="points", amount=100)
        assert online.mode == "online" and await cloud_points() == 400

        broker.stop()
        await wait_until(lambda: not agent.online(), within_s=20, what="the box offline")
        now = agent.clock.now_ms()
        key = membercode.day_key(SECRET.encode(), anna, day=membercode.day_of(now))
        view = await members.lookup(code=membercode.make(key, anna, now_ms=now))
        assert (view.member_id, view.points, view.source) == (anna, 400, "snapshot")
        offline = await members.authorise_spend(anna, unit="points", amount=200)
        assert offline.mode == "offline"
        with pytest.raises(SpendRefused) as err:
            await members.authorise_spend(anna, unit="points", amount=150)
        assert err.value.reason == "offline_cap"
        assert await cloud_points() == 400  # nothing settled while the broker is away

        broker.start()

        async def settled() -> bool:
            return await cloud_points() == 200

        await _until_async(settled, within_s=40, what="the offline spend settled")
    # the box restarts and sends its offline spend again: the cloud takes it once
    async with cloud.serving() as http, running_agent(cfg) as agent:
        await wait_until(lambda: members_of(agent).snapshot is not None, within_s=20,
                         what="the snapshot from disk")
        await asyncio.sleep(2.0)  # the outbox drains, ingest applies
        doc = (await http.get(f"/api/v1/members/{anna}")).json()
        assert doc["points_balance"] == 200


async def _until_async(check: Callable[[], Awaitable[bool]], *, within_s: float,
                       what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
