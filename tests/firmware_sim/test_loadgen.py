"""The load generator against a real Mosquitto and the real cloud (its own process,
ingest on): every event stored exactly once, sales re-priced without a mismatch,
commands answered, and a reconnect storm after which every store is back and its
outbox, filled while it was cut off, drains (decision 0057)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench._services import ADMIN_TOKEN, DEVICE_TOKEN, cloud
from firmware_sim.loadgen.fleet import LoadFleet
from firmware_sim.loadgen.identity import identities, read_credentials, store_ids
from firmware_sim.loadgen.outbox import MemoryOutbox
from firmware_sim.loadgen.snapshots import SnapshotSource
from firmware_sim.loadgen.store import StoreSettings
from firmware_sim.loadgen.traffic import Traffic
from firmware_sim.mqtturl import bus_address
from pricing import ENGINE_VERSION
from protocols.messages import Event
from tests.services import Mosquitto

STORES = 6
PROMOTION = {"kind": "threshold", "id": "lg-spend-10", "min_spend": 1_000, "amount_off": 100}


async def until(what: str, check: Callable[[], Awaitable[bool] | bool], *,
                timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def all_events(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every stored event, page by page (decision 0052: follow X-Next-Cursor)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        r = await http.get("/api/v1/events", params=params)
        assert r.status_code == 200, r.text
        out.extend(r.json()["items"])
        cursor = r.headers.get("X-Next-Cursor")
        if not cursor:
            return out
        params = {"limit": 200, "cursor": cursor}


@pytest.mark.mosquitto
async def test_fleet_against_mosquitto_and_the_cloud(mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    made: list[Event] = []
    with cloud(tmp_path / "cloud", broker=mosquitto.url) as (api, _):
        who = identities(store_ids("LT", STORES), broker=bus_address(mosquitto.url))
        snapshots = SnapshotSource(api, token=DEVICE_TOKEN)
        # ack_timeout_s short: an event the cloud missed is sent again within the test
        settings = StoreSettings(tele_interval_s=1.0, ack_timeout_s=3.0, ready_timeout_s=3.0,
                                 reconnect_min_s=0.2, reconnect_max_s=1.0)
        fleet = LoadFleet(who, settings=settings, rate_per_store=0.0, snapshots=snapshots,
                          status_file=tmp_path / "status.json")
        stop = asyncio.Event()
        runner = asyncio.create_task(fleet.run(stop), name="fleet")
        admin = httpx.AsyncClient(base_url=api, timeout=30,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        try:
            await until("every store ready", lambda: all(s.ready for s in fleet.stores))
            assert fleet.stats.connected == STORES
            # HQ publishes a promotion: each store gets the announcement, one GET for all
            assert (await admin.put(f"/api/v1/promotions/{PROMOTION['id']}",
                                    json={"promotion": PROMOTION})).status_code == 200
            assert (await admin.post("/api/v1/promotions/publish")).status_code == 200
            await until("every till priced",
                        lambda: all(s.traffic.priced is not None for s in fleet.stores))
            rng = random.Random(3)
            for _ in range(10):
                for store in fleet.stores:
                    made.append(store.make_event())
            # sales are mostly basket sales over the threshold: the promotion applies
            sales = [e for e in made if e.kind == "sale"]
            assert sales and any(e.data["totals"]["discount"] > 0 for e in sales)
            await until("the first events acknowledged",
                        lambda: all(len(s.outbox) == 0 for s in fleet.stores))

            # ---- a reconnect storm; events made while cut off wait in the outbox ----
            connects = fleet.stats.connects
            fleet.storm()
            await until("every store cut", lambda: fleet.stats.connected < STORES,
                        timeout_s=10)
            for store in rng.sample(fleet.stores, k=STORES):
                if not store.connected:
                    made.append(store.make_event())
            await until("every store back", lambda: fleet.stats.connected == STORES
                        and all(s.ready for s in fleet.stores))
            assert fleet.stats.connects >= connects + STORES  # each one reconnected
            assert fleet.stats.errors["storm_drop"] >= STORES - 1
            await until("every outbox drained",
                        lambda: all(len(s.outbox) == 0 for s in fleet.stores))

            # ---- commands answered ----
            cmd_ids = []
            for store in fleet.stores:
                r = await admin.post(f"/api/v1/stores/{store.store_id}/commands",
                                     json={"name": "ping"})
                assert r.status_code == 202, r.text
                cmd_ids.append(r.json()["cmd_id"])
            r = await admin.post(f"/api/v1/stores/{fleet.stores[0].store_id}/commands",
                                 json={"name": "no_such_command"})
            odd = r.json()["cmd_id"]

            async def answered() -> bool:
                got = [(await admin.get(f"/api/v1/commands/{c}")).json()
                       for c in [*cmd_ids, odd]]
                return all(g["status"] != "pending" for g in got)

            await until("every command answered", answered)
            for c in cmd_ids:
                got = (await admin.get(f"/api/v1/commands/{c}")).json()
                assert got["status"] == "ok" and got["result"] == {"pong": True}
            assert (await admin.get(f"/api/v1/commands/{odd}")).json()["status"] == \
                "unknown_command"

            # ---- stored exactly once, sales audited without a mismatch ----
            async def all_stored() -> bool:
                return len(await all_events(admin)) >= len(made)

            await until("every event stored", all_stored)
            stored = await all_events(admin)
            ids = [e["id"] for e in stored]
            assert len(ids) == len(set(ids))
            assert sorted(ids) == sorted(e.id for e in made)
            # a resend is marked historical, the first copy stored is what counts
            assert {e["kind"] for e in stored} >= {"sale", "vend"}

            sales = [e for e in made if e.kind == "sale"]  # with those made cut off

            async def audited() -> bool:
                a = (await admin.get("/api/v1/promotions/audit")).json()
                return bool(a["pending"] == 0 and a["audited"] + a["mismatched"]
                            + a["unaudited"] == len(sales))

            await until("every sale audited", audited)
            audit = (await admin.get("/api/v1/promotions/audit")).json()
            assert audit["audited"] == len(sales)
            assert audit["mismatched"] == 0 and audit["unaudited"] == 0
            assert audit["charged_differs"] == 0
            r = await admin.get("/api/v1/stores", params={"limit": 100})
            online = {s["store_id"]: s["online"] for s in r.json()["items"]} \
                if isinstance(r.json(), dict) else {s["store_id"]: s["online"] for s in r.json()}
            assert all(online[s.store_id] for s in fleet.stores)
        finally:
            stop.set()
            await runner
            await admin.aclose()
            await snapshots.aclose()
    assert fleet.stats.errors.get("store_crashed", 0) == 0
    assert snapshots.failures == 0


def test_outbox_keeps_an_event_until_acknowledged_and_resends_it_historical() -> None:
    outbox = MemoryOutbox()
    traffic = Traffic("S1", rng=random.Random(1))
    first, second = traffic.vend(1_000), traffic.alarm(2_000)
    outbox.add(first, "t/1")
    outbox.add(second, "t/2")
    outbox.add(first, "t/1")  # the same id again is the same event
    assert len(outbox) == 2
    due = outbox.due(0.0, ack_timeout_s=5.0, limit=10)
    assert [e.event.id for e in due] == [first.id, second.id]
    assert b'"historical":false' in due[0].payload()
    for entry in due:
        outbox.mark_sent(entry, 0.0)
    assert outbox.due(1.0, ack_timeout_s=5.0, limit=10) == []  # awaiting the cloud
    assert outbox.awaiting_ack() == 2
    assert outbox.ack([first.id]) == 1
    again = outbox.due(6.0, ack_timeout_s=5.0, limit=10)  # overdue: sent again
    assert [e.event.id for e in again] == [second.id]
    assert b'"historical":true' in again[0].payload()
    outbox.mark_sent(again[0], 6.0)  # a second send waits twice as long
    assert outbox.due(15.0, ack_timeout_s=5.0, limit=10) == []
    assert len(outbox.due(16.0, ack_timeout_s=5.0, limit=10)) == 1
    outbox.new_session()
    assert len(outbox.due(6.5, ack_timeout_s=5.0, limit=10)) == 1
    assert outbox.oldest_ts() == 2_000


def test_credentials_file_gives_stores_their_own(tmp_path: Path) -> None:
    creds = tmp_path / "creds.txt"
    creds.write_text("# store user password\nLG00001 store-1 s3cret\n", encoding="utf-8")
    who = identities(store_ids("LG", 2), broker=bus_address("mqtt://shared:pw@h:1883"),
                     credentials=read_credentials(creds))
    assert who[0].broker.username == "shared"
    assert (who[1].broker.username, who[1].broker.password) == ("store-1", "s3cret")
    creds.write_text("LG00001 only-two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"creds\.txt:1"):
        read_credentials(creds)


def test_sale_carries_what_the_audit_needs() -> None:
    from firmware_sim.loadgen.snapshots import Priced
    from pricing import PromotionSnapshot, compile

    snapshot = PromotionSnapshot(version=3, currency="EUR")
    traffic = Traffic("S1", rng=random.Random(2))
    traffic.priced = Priced(snapshot, compile(snapshot))
    sale = traffic.sale(5_000)
    data = sale.data
    assert sale.kind == "sale" and data["snapshot_version"] == 3
    assert data["engine_version"] == ENGINE_VERSION
    assert data["ruleset_hash"] == snapshot.ruleset_hash()
    assert data["charged"] == data["totals"]["paid"] == data["totals"]["total"]
    assert set(data["catalog"]["items"]) == {ln["sku"] for ln in data["basket"]["lines"]}
