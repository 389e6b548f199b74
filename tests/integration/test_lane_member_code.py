"""A lane terminal sells through the box with the member's signed code and the cloud
authorises the points spend (issue 17): real Mosquitto, the real cloud under uvicorn
with ingest, a real agent with the content, members and till modules and one lane over
HTTP.

The member shows their rotating code; the lane attaches it (a replay of the same code is
refused, 403 ``replayed``); the member pays part with points; the box asks the cloud to
take them before it records the sale, the sale names the spend, and when the sale
arrives the cloud does not take the points a second time: the balance is the seed less
the points used plus the points earned, exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bench.till import lanes_of
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.modules.in_aisle import InAisleModule
from edge_agent.modules.members import Members
from edge_agent.modules.till import Till
from protocols import membercode
from storefleet.demo_retail import hq_setup, load_sample
from tests.cloud.conftest import DEVICE
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.integration.test_content_offline import Cloud
from tests.integration.test_members_offline import _until_async
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]

SECRET = "integration-member-code-secret-02"
HASH_KEY = "integration-member-hash-key-0002"
SEED = 1_000


async def test_a_lane_sells_with_a_member_code_and_the_cloud_authorises_the_points(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    broker = mosquitto_factory()
    cloud = Cloud(tmp_path, broker)
    sample = load_sample(SAMPLE_DATA)
    cloud.settings = cloud.settings.model_copy(update={
        "member_code_secret": SecretStr(SECRET), "member_hash_key": SecretStr(HASH_KEY),
        "currency": sample["catalog"]["currency"]})
    lane = lanes_of(1)[0]
    content = cloud.content_settings()
    till = {"cloud_api": cloud.url, "cloud_api_token": DEVICE,
            "trusted_keys": content["trusted_keys"],
            "currency": sample["catalog"]["currency"], "refresh_interval_s": 0.5,
            "lanes": {"host": "127.0.0.1", "port": 0, "lane": [lane]}}
    cfg = make_config(tmp_path / "box", uplink=broker, local=mosquitto_factory(),
                      await_cloud_ready=True, await_cloud_ack=True, modules={
        "content": content, "members": {"phone_key": HASH_KEY}, "till": till,
        "in_aisle": {"cartscreen_port": 0, "cartscreen_host": "127.0.0.1",
                     "retail_data": SAMPLE_DATA}})
    store = cfg.store_id
    async with cloud.serving() as http, running_agent(cfg) as agent:
        demo = None
        for _ in range(200):  # the store is known once its birth is in
            try:
                demo = await hq_setup(http, store, sample)
                break
            except RuntimeError:
                await asyncio.sleep(0.05)
        assert demo is not None and demo.member_id
        anna = demo.member_id
        r = await http.post(f"/api/v1/members/{anna}/points/earn",
                            json={"points": SEED, "op_id": "lane-seed"})
        assert r.status_code < 300, r.text
        seeded = int((await http.get(f"/api/v1/members/{anna}")).json()["points_balance"])
        r = await http.put(f"/api/v1/members/{anna}/home-store", json={"store_id": store})
        assert r.status_code == 200, r.text
        r = await http.post("/api/v1/member-snapshots/publish", json={"stores": [store]})
        assert r.status_code == 201, r.text
        members, till_module = agent.module("members"), agent.module("till")
        assert isinstance(members, Members) and isinstance(till_module, Till)
        await wait_until(lambda: members.snapshot is not None, within_s=20,
                         what="the member snapshot taken from the manifest")
        pos = till_module.pos
        await wait_until(lambda: pos.synced.is_set() and pos.pricebook.version is not None,
                         within_s=30, what="the till synced its price book")
        assert till_module.lanes is not None and till_module.lanes.url is not None

        now = agent.clock.now_ms()
        code = membercode.make(membercode.day_key(SECRET.encode(), anna,
                                                  day=membercode.day_of(now)),
                               anna, now_ms=now)
        sku = sorted(demo.names)[0]
        async with httpx.AsyncClient(base_url=till_module.lanes.url, timeout=10, headers={
                "Authorization": f"Bearer {lane['token']}"}) as terminal:
            bid = (await terminal.post("/till/v1/baskets")).json()["basket_id"]
            base = f"/till/v1/baskets/{bid}"
            r = await terminal.post(f"{base}/items", json={"code": sku, "qty": 3})
            assert r.status_code == 200, r.text
            r = await terminal.put(f"{base}/member", json={"code": code})
            assert r.status_code == 200, r.text
            assert r.json()["member"]["member_id"] == anna
            replay = await terminal.put(f"{base}/member", json={"code": code})
            assert (replay.status_code, replay.json()["reason"]) == (403, "replayed")
            r = await terminal.put(f"{base}/tender", json={"method": "card", "points": 100})
            assert r.status_code == 200, r.text
            r = await terminal.post(f"{base}/complete")
            assert r.status_code == 200, r.text
            sale = r.json()
        assert sale["points_used"] > 0
        # taken by the cloud before the sale was recorded
        after_spend = seeded - sale["points_used"]
        assert members.metrics.spends.labels(mode="online", result="authorised")._value.get() \
            == 1
        expected = after_spend + sale["points_earned"]

        # the same member signs in on a cart screen with the code their phone shows now
        aisle = agent.get(InAisleModule).in_aisle
        assert aisle.url is not None
        later = now + membercode.STEP_MS  # the next code the phone shows
        fresh = membercode.make(membercode.day_key(SECRET.encode(), anna,
                                                   day=membercode.day_of(later)),
                                anna, now_ms=later)
        forged = fresh[:-4] + ("AAAA" if not fresh.endswith("AAAA") else "BBBB")
        async with httpx.AsyncClient(base_url=aisle.url, timeout=10) as screen:
            r = await screen.post("/api/cart/C7/member", json={"qr": forged})
            assert r.status_code == 403 and "forged" in r.text, r.text
            r = await screen.post("/api/cart/C7/member", json={"qr": fresh})
            assert r.status_code == 200, r.text
            assert (r.json()["member_id"], r.json()["points"]) == (anna, after_spend)
        assert members.metrics.codes.labels(result="forged")._value.get() == 1

        async def settled() -> bool:
            doc = (await http.get(f"/api/v1/members/{anna}")).json()
            return int(doc["points_balance"]) == expected

        await _until_async(settled, within_s=30, what="the sale's points earned")
        await asyncio.sleep(1.0)  # nothing more happens to the balance
        doc = (await http.get(f"/api/v1/members/{anna}")).json()
        assert int(doc["points_balance"]) == expected, (doc, sale, seeded)
