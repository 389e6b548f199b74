"""A lane terminal sells through the box with the member's signed code and the cloud
authorises the points spend (issue 17): real Mosquitto, the real cloud under uvicorn
with ingest, a real agent with the content, members and till modules and one lane over
HTTP.

The member shows their rotating code; the lane attaches it (a replay of the same code is
refused, 403 ``replayed``); the member pays part with points; the box asks the cloud to
take them before it records the sale, the sale names the spend, and when the sale
arrives the cloud does not take the points a second time: the balance is the seed less
the points used plus the points earned, exactly.

A sale whose recording then fails (the box's disk full) gives its authorised points
back (decision 0068): the release goes through the outbox and ingest, the balance is
whole again, and the same sale id sold again spends under a new spend id, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from bench.till import lanes_of
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.errors import StorageError
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
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto],
        monkeypatch: pytest.MonkeyPatch) -> None:
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

        # the disk is full as the next sale is recorded: its points go back
        real_record = pos.ledger.record_sale

        async def disk_full(*args: Any, **kwargs: Any) -> None:
            raise StorageError("record_sale", "database or disk is full")

        monkeypatch.setattr(pos.ledger, "record_sale", disk_full)
        one_request = {"sale_id": "lane-sale-0068", "lines": [{"code": sku, "qty": 2}],
                       "member": {"member_id": anna}, "tender": {"method": "card",
                                                                  "points": 100}}
        async with httpx.AsyncClient(base_url=till_module.lanes.url, timeout=10, headers={
                "Authorization": f"Bearer {lane['token']}"}) as terminal:
            # refused before it is recorded (cash short): nothing was authorised
            short = {**one_request, "tender": {"method": "cash", "cash_given": 1,
                                               "points": 100}}
            r = await terminal.post("/till/v1/sales", json=short)
            assert (r.status_code, r.json()["reason"]) == (409, "short_tender"), r.text
            assert len(members.spends) == 1  # the first sale's
            r = await terminal.post("/till/v1/sales", json=one_request)
            assert (r.status_code, r.json()["reason"]) == (409, "ledger"), r.text
            released = [s for s in members.spends if s.released]
            assert [(s.member_id, s.unit, s.amount) for s in released] == [
                (anna, "points", 100)]

            def spend_rows() -> list[tuple[str, int, str]]:
                with create_engine(cloud.settings.database_url).connect() as db:
                    return [(row.spend_id, row.taken, row.status) for row in db.execute(
                        text("SELECT spend_id, taken, status FROM member_spends "
                             "WHERE member_id = :m ORDER BY recorded_ms"), {"m": anna})]

            async def given_back() -> bool:
                return spend_rows()[-1:] == [(released[0].spend_id, 100, "released")]

            await _until_async(given_back, within_s=30, what="the release ingested")
            doc = (await http.get(f"/api/v1/members/{anna}")).json()
            assert int(doc["points_balance"]) == expected, doc
            # the disk has room again: the same sale, spent once under a new id
            monkeypatch.setattr(pos.ledger, "record_sale", real_record)
            r = await terminal.post("/till/v1/sales", json=one_request)
            assert r.status_code == 200, r.text
            again = r.json()
        assert again["points_used"] == 100
        spent = [s.spend_id for s in members.spends if not s.released]
        assert len(spent) == 2 and released[0].spend_id not in spent  # the first sale's, this
        expected += again["points_earned"] - 100
        await _until_async(settled, within_s=30, what="the second sale's points")
        await asyncio.sleep(1.0)
        doc = (await http.get(f"/api/v1/members/{anna}")).json()
        assert int(doc["points_balance"]) == expected, (doc, again)
        assert members.metrics.spends.labels(mode="online", result="given_back"
                                             )._value.get() == 1
