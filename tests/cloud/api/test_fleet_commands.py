"""Fleet-wide commands and idempotency keys (decision 0061), on SQLite and PostgreSQL: one
POST makes one command per selected store (all, a region, a group), each published with
its own cmd_id; results stored by ingest are counted as the fan-out's progress and the
ones not ok paged; a retried POST with the same Idempotency-Key answers the first
command or fan-out; roles and scopes as for single commands."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.codec import decode
from protocols.messages import Birth, CommandResult, DeviceInfo
from protocols.messages import Command as CommandMsg
from tests.cloud.api.test_command_senders import ANN, settings
from tests.cloud.api.test_resources import ingest
from tests.cloud.conftest import (
    ADMIN,
    MANAGER,
    TECH,
    TECH_NORTH,
    api_client,
    auth,
    metric,
)

STORES = ["s1", "s2", "s3", "s4"]
DEVICES = [DeviceInfo(device_id="P1", kind="printer")]


def seed(db_url: str) -> None:
    ingest(db_url, [(topics.state(s), encode(Birth(bd_seq=1, ts=1, agent_version="9",
                                                   devices=DEVICES))) for s in STORES],
           ManualClock())


def sent(pub: MemoryPublisher) -> dict[str, CommandMsg]:
    """store -> the command message published to its agent."""
    out = {}
    for store in STORES:
        for msg in pub.on(topics.cmd(store, "agent")):
            out[store] = decode(msg.payload, CommandMsg)
    return out


def answer(db_url: str, results: dict[str, tuple[str, str]], clock: ManualClock) -> None:
    """Each store's result (status, cmd_id) stored as ingest stores it."""
    ingest(db_url, [(topics.cmd_res(store), encode(CommandResult(
        cmd_id=cmd_id, target="agent", status=status,  # type: ignore[arg-type]
        result={"pong": True} if status == "ok" else {},
        error=None if status == "ok" else status, ts=1)))
        for store, (status, cmd_id) in results.items()], clock)


async def test_a_fanout_reaches_every_store_and_counts_its_results(db_url: str) -> None:
    seed(db_url)
    pub, clock = MemoryPublisher(), ManualClock()
    app = create_app(settings(db_url), publisher=pub, clock=clock)
    async with api_client(app) as c:
        r = await c.post("/api/v1/fleet/commands", headers=auth(ADMIN),
                         json={"all": True, "name": "ping", "ttl_s": 60})
        assert r.status_code == 202, r.text
        fanout = r.json()
        assert r.headers["Location"] == f"/api/v1/fleet/commands/{fanout['fanout_id']}"
        assert (fanout["stores"], fanout["counts"], fanout["done"]) == (
            4, {"sent": 4, "ok": 0, "failed": 0, "expired": 0}, False)
        msgs = sent(pub)
        assert sorted(msgs) == STORES
        assert len({m.cmd_id for m in msgs.values()}) == 4  # each its own command
        assert {m.name for m in msgs.values()} == {"ping"}

        # Three answer (two ok, one error), in one ingest batch; the fourth does not.
        answer(db_url, {"s1": ("ok", msgs["s1"].cmd_id), "s2": ("ok", msgs["s2"].cmd_id),
                        "s3": ("error", msgs["s3"].cmd_id)}, clock)
        path = f"/api/v1/fleet/commands/{fanout['fanout_id']}"
        got = (await c.get(path, headers=auth(TECH))).json()
        assert got["counts"] == {"sent": 1, "ok": 2, "failed": 1, "expired": 0}
        assert got["by_status"] == {"ok": 2, "error": 1, "pending": 1}
        # each store's own command carries its result
        one = (await c.get(f"/api/v1/commands/{msgs['s1'].cmd_id}", headers=auth(TECH))).json()
        assert (one["status"], one["result"], one["store_id"]) == ("ok", {"pong": True}, "s1")
        failures = (await c.get(f"{path}/failures", headers=auth(TECH))).json()
        assert [(f["store_id"], f["status"]) for f in failures] == [("s3", "error")]

        clock.advance(61)  # past expires_at: the silent store's command has expired
        got = (await c.get(path, headers=auth(TECH))).json()
        assert (got["counts"], got["done"]) == (
            {"sent": 0, "ok": 2, "failed": 1, "expired": 1}, True)
        failures = (await c.get(f"{path}/failures", headers=auth(TECH))).json()
        assert sorted((f["store_id"], f["status"]) for f in failures) == [
            ("s3", "error"), ("s4", "expired")]
        assert (await c.get("/api/v1/fleet/commands/nope", headers=auth(TECH))).status_code == 404


async def test_failures_are_paged_with_a_cursor(db_url: str) -> None:
    seed(db_url)
    pub, clock = MemoryPublisher(), ManualClock()
    async with api_client(create_app(settings(db_url), publisher=pub, clock=clock)) as c:
        r = await c.post("/api/v1/fleet/commands", headers=auth(ADMIN),
                         json={"all": True, "name": "ping", "ttl_s": 5})
        fid = r.json()["fanout_id"]
        clock.advance(6)  # none answered: all four expired
        seen: list[str] = []
        url: str | None = f"/api/v1/fleet/commands/{fid}/failures?limit=3"
        while url is not None:
            page = await c.get(url, headers=auth(ADMIN))
            assert page.status_code == 200, page.text
            seen += [f["store_id"] for f in page.json()]
            cursor = page.headers.get("X-Next-Cursor")
            url = None if cursor is None else (
                f"/api/v1/fleet/commands/{fid}/failures?limit=3&cursor={cursor}")
        assert sorted(seen) == STORES and len(seen) == 4


async def test_a_fanout_selects_by_region_group_and_store(db_url: str) -> None:
    seed(db_url)
    pub = MemoryPublisher()
    async with api_client(create_app(settings(db_url), publisher=pub)) as c:
        h = auth(ADMIN)
        assert (await c.put("/api/v1/regions/north/stores/s1", headers=h)).status_code == 200
        assert (await c.put("/api/v1/groups/pilot/stores/s3", headers=h)).status_code == 200
        r = await c.post("/api/v1/fleet/commands", headers=h, json={
            "regions": ["north"], "groups": ["pilot"], "stores": ["s4"], "name": "ping"})
        assert r.status_code == 202, r.text
        assert r.json()["stores"] == 3
        assert sorted(sent(pub)) == ["s1", "s3", "s4"]
        for body, status, reason in [
            ({"name": "ping"}, 422, None),  # no selection
            ({"all": True, "stores": ["s1"], "name": "ping"}, 422, None),  # both
            ({"stores": ["s9"], "name": "ping"}, 404, "unknown_store"),
            ({"groups": ["nobody"], "name": "ping"}, 422, "empty_selection"),
        ]:
            r = await c.post("/api/v1/fleet/commands", headers=h, json=body)
            assert r.status_code == status, (body, r.text)
            if reason:
                assert r.json()["type"].endswith(reason), r.text
        assert len(sent(pub)) == 3  # nothing more published


async def test_an_idempotency_key_answers_the_first_request(db_url: str) -> None:
    seed(db_url)
    pub = MemoryPublisher()
    async with api_client(create_app(settings(db_url), publisher=pub)) as c:
        key = {**auth(ADMIN), "Idempotency-Key": "job-42-ping"}
        body = {"all": True, "name": "ping"}
        first = await c.post("/api/v1/fleet/commands", headers=key, json=body)
        again = await c.post("/api/v1/fleet/commands", headers=key, json=body)
        assert first.status_code == again.status_code == 202, again.text
        assert first.json()["fanout_id"] == again.json()["fanout_id"]
        assert len(pub.messages) == 4  # published once
        # the same key for another request is refused, not answered with the first
        r = await c.post("/api/v1/fleet/commands", headers=key,
                         json={"all": True, "name": "rebirth"})
        assert (r.status_code, r.json()["type"].split("/")[-1]) == (
            422, "idempotency_key_reused")
        # another sender's key is its own
        other = await c.post("/api/v1/fleet/commands", json=body,
                             headers={**auth(TECH), "Idempotency-Key": "job-42-ping"})
        assert other.json()["fanout_id"] != first.json()["fanout_id"]

        # single commands: the same
        one = {**auth(ADMIN), "Idempotency-Key": "0b9f6c1e-single"}
        a = await c.post("/api/v1/stores/s1/commands", headers=one, json={"name": "ping"})
        b = await c.post("/api/v1/stores/s1/commands", headers=one, json={"name": "ping"})
        assert a.status_code == b.status_code == 202, b.text
        assert a.json()["cmd_id"] == b.json()["cmd_id"]
        assert len(pub.on(topics.cmd("s1", "agent"))) == 3  # 2 fan-outs + 1 single
        r = await c.post("/api/v1/stores/s2/commands", headers=one, json={"name": "ping"})
        assert r.status_code == 422 and "idempotency_key_reused" in r.json()["type"]
        r = await c.post("/api/v1/stores/s1/commands", json={"name": "ping"},
                         headers={**auth(ADMIN), "Idempotency-Key": "with space"})
        assert r.status_code == 422 and "invalid_idempotency_key" in r.json()["type"]

        # racing retries (a client that timed out and retried at once): one command
        race = {**auth(ADMIN), "Idempotency-Key": "race-1"}
        answers = await asyncio.gather(*(
            c.post("/api/v1/stores/s2/commands", headers=race, json={"name": "ping"})
            for _ in range(4)))
        assert {r.status_code for r in answers} == {202}
        assert len({r.json()["cmd_id"] for r in answers}) == 1
        assert len(pub.on(topics.cmd("s2", "agent"))) == 3  # 2 fan-outs + 1 single


async def test_roles_and_scopes_are_checked_as_for_single_commands(db_url: str) -> None:
    seed(db_url)
    pub, registry = MemoryPublisher(), CollectorRegistry()
    async with api_client(create_app(settings(db_url), publisher=pub,
                                     registry=registry)) as c:
        async def post(token: str, **body: Any) -> tuple[int, str]:
            r = await c.post("/api/v1/fleet/commands", headers=auth(token), json=body)
            return r.status_code, str(r.json().get("type", "")).split("/")[-1]

        assert await post(MANAGER, all=True, name="ping") == (403, "forbidden")
        assert await post(TECH, all=True, name="open_drawer", target="P1",
                          reason="count") == (403, "sensitive_command_forbidden")
        assert await post(ADMIN, all=True, name="open_drawer",
                          target="P1") == (422, "reason_required")
        # a scoped token reaches its own stores only
        assert await post(ANN, all=True, name="open_drawer", target="P1",
                          reason="count") == (403, "forbidden_store")
        assert await post(TECH_NORTH, all=True, name="ping") == (403, "forbidden_store")
        assert pub.messages == []
        assert metric(registry, "storefleet_api_rejected_total",
                      reason="sensitive_command_forbidden") == 1
        assert metric(registry, "storefleet_api_rejected_total",
                      reason="forbidden_store") == 2
        r = await c.post("/api/v1/fleet/commands", headers=auth(ANN), json={
            "stores": ["s1"], "name": "open_drawer", "target": "P1", "reason": "count"})
        assert r.status_code == 202, r.text
        (msg,) = pub.messages
        assert msg.topic == topics.cmd("s1", "P1")
        drawer = decode(msg.payload, CommandMsg)
        assert drawer.reason == "count" and drawer.sender is not None
        assert drawer.sender.name == "ann"
        # the scoped manager reads its own fan-out, not the admin's
        r2 = await c.post("/api/v1/fleet/commands", headers=auth(ADMIN),
                          json={"all": True, "name": "ping"})
        own = await c.get(f"/api/v1/fleet/commands/{r.json()['fanout_id']}", headers=auth(ANN))
        assert own.status_code == 200
        other = await c.get(f"/api/v1/fleet/commands/{r2.json()['fanout_id']}",
                            headers=auth(ANN))
        assert other.status_code == 403


async def test_commands_the_broker_does_not_take_are_undeliverable(db_url: str) -> None:
    seed(db_url)
    pub, registry = MemoryPublisher(fail=True), CollectorRegistry()
    async with api_client(create_app(settings(db_url), publisher=pub,
                                     registry=registry)) as c:
        r = await c.post("/api/v1/fleet/commands", headers=auth(ADMIN),
                         json={"all": True, "name": "ping"})
        assert r.status_code == 503 and "publish_failed" in r.json()["type"], r.text
        assert metric(registry, "storefleet_api_publish_failures_total", kind="command") == 4
        fid = r.headers["Location"].rpartition("/")[2]
        got = (await c.get(f"/api/v1/fleet/commands/{fid}", headers=auth(ADMIN))).json()
        assert (got["counts"], got["by_status"]) == (
            {"sent": 0, "ok": 0, "failed": 4, "expired": 0}, {"undeliverable": 4})
