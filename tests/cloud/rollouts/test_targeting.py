"""Rollout targeting (decision 0043) through the API on SQLite and PostgreSQL: stores,
regions, groups and device models, resolved at create and recorded in the targets;
empty or contradictory selections are 422 problems; groups are hq-admin's."""

from __future__ import annotations

from typing import Any

import httpx

from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.db.models_artifacts import Artifact
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.codec import decode
from protocols.messages import Birth, Command, DeviceInfo
from tests.cloud.conftest import ADMIN, MANAGER, TECH, api_client, auth, make_settings

CAB8 = "c8" * 32  # firmware:vending/cab-8
AGENT = "a9" * 32  # agent


def seed(db_url: str) -> None:
    """s1: a cab-8; s2: a cab-8 and a cart; s3: a cab-9; s4: no cabinet."""
    upgrade(db_url)
    engine = make_engine(db_url)
    devices: dict[str, list[tuple[str, str, str | None]]] = {
        "s1": [("vend-1", "vending", "cab-8")],
               "s2": [("vend-2", "vending", "cab-8"), ("cart-1", "cart", "cab-8")],
               "s3": [("vend-3", "vending", "cab-9")], "s4": [("p1", "printer", None)]}
    try:
        sessions = make_session_factory(writer(engine))
        BatchProcessor(sessions, clock=ManualClock(), max_payload=65536).process([
            (topics.state(store), encode(Birth(bd_seq=1, ts=1, agent_version="9", devices=[
                DeviceInfo(device_id=d, kind=k, model=m) for d, k, m in devs])))
            for store, devs in devices.items()])
        with sessions.begin() as session:
            session.add(Artifact(sha256=CAB8, kind="firmware", target="firmware:vending/cab-8",
                                 version="2.0.0", size=1, created_ms=0, signed={}))
            session.add(Artifact(sha256=AGENT, kind="agent", target="agent", version="9.1",
                                 size=1, created_ms=0, signed={}))
    finally:
        engine.dispose()


async def plan(c: httpx.AsyncClient, status: int, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/rollouts", headers=auth(ADMIN),
                     json={"sha256": CAB8, "canary_size": 1, **body})
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
    return dict(r.json())


def targets(rollout: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["store_id"], t["device"]) for t in rollout["targets"]]


async def test_a_rollout_reaches_the_union_of_stores_regions_groups_and_models(
    db_url: str,
) -> None:
    seed(db_url)
    publisher = MemoryPublisher()
    async with api_client(create_app(make_settings(db_url), publisher=publisher)) as c:
        assert (await c.put("/api/v1/regions/north/stores/s3",
                            headers=auth(ADMIN))).status_code == 200
        for store in ("s4", "s1"):
            r = await c.put(f"/api/v1/groups/pilot/stores/{store}", headers=auth(ADMIN))
            assert r.status_code == 200, r.text
        assert r.json() == {"group": "pilot", "stores": ["s1", "s4"]}
        r = await c.put("/api/v1/groups/pilot/stores/nope", headers=auth(ADMIN))
        assert r.status_code == 404
        assert (await c.get("/api/v1/groups", headers=auth(ADMIN))).json() == [
            {"group": "pilot", "stores": ["s1", "s4"]}]
        for token in (TECH, MANAGER):  # groups are hq-admin's
            assert (await c.get("/api/v1/groups", headers=auth(token))).status_code == 403
            assert (await c.put("/api/v1/groups/g/stores/s1",
                                headers=auth(token))).status_code == 403

        # explicit stores first (the canary), then what regions and groups reach, sorted
        union = await plan(c, 201, device="vend-1", stores=["s2"], regions=["north"],
                           groups=["pilot"])
        assert targets(union) == [("s2", "vend-1"), ("s1", "vend-1"), ("s3", "vend-1"),
                                  ("s4", "vend-1")]
        assert union["selection"] == {"stores": ["s2"], "regions": ["north"],
                                      "groups": ["pilot"], "models": []}
        assert union["device"] == "vend-1" and union["stores"] == 4
        assert [w["size"] for w in union["waves"]] == [1, 3]  # s2 is the canary

        # a model: every store with a vending cab-8, each offer naming its own device
        before = len(publisher.messages)
        by_model = await plan(c, 201, models=["cab-8"], canary_size=2)
        assert targets(by_model) == [("s1", "vend-1"), ("s2", "vend-2")]
        assert by_model["device"] == "*"
        offers = [decode(m.payload, Command) for m in publisher.messages[before:]]
        assert sorted((m.topic, o.args["device"]) for m, o in zip(
            publisher.messages[before:], offers, strict=True)) == [
            (topics.cmd("s1", "agent"), "vend-1"), (topics.cmd("s2", "agent"), "vend-2")]
        # a model narrows a store selection
        assert targets(await plan(c, 201, models=["cab-8"], groups=["pilot"])) == [
            ("s1", "vend-1")]
        # out of the group: a later rollout by group no longer reaches it
        assert (await c.delete("/api/v1/groups/pilot/stores/s4",
                               headers=auth(ADMIN))).status_code == 204
        gone = await c.delete("/api/v1/groups/pilot/stores/s4", headers=auth(ADMIN))
        assert gone.status_code == 404 and "not in group 'pilot'" in gone.json()["detail"]
        assert targets(await plan(c, 201, device="vend-1", groups=["pilot"])) == [
            ("s1", "vend-1")]
        # listed rollouts carry their selection
        listed = (await c.get("/api/v1/rollouts", headers=auth(ADMIN))).json()
        assert listed[0]["selection"]["groups"] == ["pilot"] and listed[0]["deferred"] == 0


async def test_an_empty_or_contradictory_selection_is_a_422_problem(db_url: str) -> None:
    seed(db_url)
    async with api_client(create_app(make_settings(db_url), publisher=MemoryPublisher())) as c:
        assert (await c.put("/api/v1/regions/north/stores/s3",
                            headers=auth(ADMIN))).status_code == 200
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"models": ["cab-9"]}, "contradictory_selection", "is for model 'cab-8'"),
            ({"models": ["cab-8"], "device": "vend-1"}, "contradictory_selection",
             "or models, not both"),
            ({"models": ["cab-8"], "sha256": AGENT}, "contradictory_selection",
             "agent artifact cannot target device models"),
            ({"regions": ["south"], "device": "vend-1"}, "empty_selection",
             "region 'south' has no stores"),
            ({"groups": ["ghost"], "device": "vend-1"}, "empty_selection",
             "group 'ghost' has no stores"),
            ({"models": ["cab-8"], "regions": ["north"]}, "empty_selection",
             "no store has a vending/cab-8 device among 1 selected store(s)"),
            ({"stores": ["s1"]}, "wrong_target", "cannot go to 'agent'"),
        ]
        for body, reason, words in cases:
            problem = await plan(c, 422, **body)
            assert problem["type"].endswith("/" + reason), problem
            assert words in problem["detail"], problem
        problem = await plan(c, 422, device="vend-1")  # nothing selected at all
        assert "give stores, regions, groups or models" in str(problem)
        assert (await c.get("/api/v1/rollouts", headers=auth(ADMIN))).json() == []


async def test_a_store_with_two_devices_of_the_model_is_refused(db_url: str) -> None:
    seed(db_url)
    engine = make_engine(db_url)
    try:
        BatchProcessor(make_session_factory(writer(engine)), clock=ManualClock(),
                       max_payload=65536).process([(topics.state("s1"), encode(Birth(
                           bd_seq=2, ts=2, agent_version="9", devices=[
                               DeviceInfo(device_id="vend-1", kind="vending", model="cab-8"),
                               DeviceInfo(device_id="vend-9", kind="vending",
                                          model="cab-8")])))])
    finally:
        engine.dispose()
    async with api_client(create_app(make_settings(db_url), publisher=MemoryPublisher())) as c:
        problem = await plan(c, 422, models=["cab-8"])
        assert problem["type"].endswith("/contradictory_selection")
        assert "store s1 has 2 vending/cab-8 devices (vend-1, vend-9)" in problem["detail"]
