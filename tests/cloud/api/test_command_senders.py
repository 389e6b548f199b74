"""Who sent a command and why (decision 0044), on SQLite and PostgreSQL: the sender and
reason are stored, returned and sent to the box; a sensitive command (protocols.commands)
needs a configured role and a stated reason, and each refusal is a counted problem;
the cloud's own rollout offers carry a system sender."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.db.migrate import upgrade
from cloud.db.models import Command, Store
from cloud.db.models_artifacts import Artifact
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.rollouts.service import RolloutMetrics, RolloutOfferer, RolloutPlan, create
from cloud.settings import CloudSettings, Role, TokenGrant
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.codec import decode
from protocols.messages import Birth, DeviceInfo
from protocols.messages import Command as CommandMsg
from tests.cloud.api.test_resources import ingest
from tests.cloud.conftest import ADMIN, MANAGER_S1, TECH, api_client, auth, make_settings, metric

ANN = "test-ann-manager-s1-tok"  # a named store-manager token of s1
DEVICES = [DeviceInfo(device_id="P1", kind="printer"), DeviceInfo(device_id="V1", kind="vending"),
           DeviceInfo(device_id="C1", kind="cart")]


def settings(db_url: str, **kw: Any) -> CloudSettings:
    base = make_settings(db_url, **kw)
    tokens = {**base.api_tokens, ANN: TokenGrant(role=Role.STORE_MANAGER, stores=("s1",),
                                                 name="ann")}
    return base.model_copy(update={"api_tokens": tokens})


def seed(db_url: str) -> None:
    ingest(db_url, [(topics.state("s1"), encode(Birth(bd_seq=1, ts=1, agent_version="9",
                                                       devices=DEVICES)))], ManualClock())


def fingerprint(token: str, role: str) -> str:
    return f"{role}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"


async def test_the_sender_and_reason_are_stored_returned_and_sent_to_the_box(
    db_url: str,
) -> None:
    seed(db_url)
    pub = MemoryPublisher()
    async with api_client(create_app(settings(db_url), publisher=pub)) as c:
        r = await c.post("/api/v1/stores/s1/commands", headers=auth(ADMIN),
                         json={"name": "ping"})
        assert r.status_code == 202, r.text
        ping = r.json()
        # no name configured: the role and a fingerprint that does not reveal the token
        assert (ping["sender"], ping["sender_role"], ping["reason"]) == (
            fingerprint(ADMIN, "hq-admin"), "hq-admin", None)
        assert ADMIN not in json.dumps(ping)

        r = await c.post("/api/v1/stores/s1/commands", headers=auth(ANN), json={
            "name": "open_drawer", "target": "P1", "reason": "  float count at shift change "})
        assert r.status_code == 202, r.text
        drawer = r.json()
        got = (await c.get(f"/api/v1/commands/{drawer['cmd_id']}", headers=auth(TECH))).json()
        assert (got["sender"], got["sender_role"], got["reason"]) == (
            "ann", "store-manager", "float count at shift change")

        (sent_ping,) = pub.on(topics.cmd("s1", "agent"))
        (sent_drawer,) = pub.on(topics.cmd("s1", "P1"))
        box_ping = decode(sent_ping.payload, CommandMsg)
        assert box_ping.sender is not None and box_ping.reason is None
        assert (box_ping.sender.name, box_ping.sender.role) == (ping["sender"], "hq-admin")
        box_drawer = decode(sent_drawer.payload, CommandMsg)
        assert box_drawer.sender is not None
        assert (box_drawer.sender.name, box_drawer.sender.role, box_drawer.reason) == (
            "ann", "store-manager", "float count at shift change")


async def test_a_sensitive_command_needs_an_allowed_role_and_a_reason(db_url: str) -> None:
    seed(db_url)
    pub, registry = MemoryPublisher(), CollectorRegistry()
    app = create_app(settings(db_url), publisher=pub, registry=registry)
    async with api_client(app) as c:
        async def send(token: str, **body: Any) -> tuple[int, dict[str, Any]]:
            r = await c.post("/api/v1/stores/s1/commands", headers=auth(token), json=body)
            return r.status_code, r.json()

        for body in ({"name": "unlock", "target": "V1", "args": {"door": 3}},
                     {"name": "unlock", "target": "V1", "args": {"door": 3}, "reason": "  "},
                     # a device the cloud has not seen yet: sensitive on the safe side
                     {"name": "open_drawer", "target": "P9"}):
            status, problem = await send(ADMIN, **body)
            assert status == 422, problem
            assert problem["type"].endswith("/reason_required")
            assert "'reason'" in problem["detail"] and body["name"] in problem["detail"]

        status, problem = await send(TECH, name="unlock", target="V1", args={"door": 3},
                                     reason="restock")
        assert status == 403, problem
        assert problem["type"].endswith("/sensitive_command_forbidden")
        assert "'unlock'" in problem["detail"] and "field-tech" in problem["detail"]
        assert "allowed roles: hq-admin, store-manager" in problem["detail"]
        assert pub.messages == []  # nothing refused reached the box

        # ordinary commands are as before: a field tech may, a store manager may not
        assert (await send(TECH, name="status", target="P1"))[0] == 202
        assert (await send(TECH, name="unlock", target="C1"))[0] == 202  # not a vending
        status, problem = await send(MANAGER_S1, name="ping")
        assert status == 403 and "may not send commands" in problem["detail"]
        # ... and a store manager may open their own store's drawer, with a reason
        assert (await send(MANAGER_S1, name="open_drawer", target="P1",
                           reason="customer change dispute"))[0] == 202

    assert metric(registry, "storefleet_api_rejected_total", reason="reason_required") == 3
    assert metric(registry, "storefleet_api_rejected_total",
                  reason="sensitive_command_forbidden") == 1


async def test_the_roles_allowed_come_from_configuration(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    seed(db_url)
    only_hq = settings(db_url).model_copy(
        update={"sensitive_command_roles": frozenset({Role.HQ_ADMIN})})
    async with api_client(create_app(only_hq, publisher=MemoryPublisher())) as c:
        r = await c.post("/api/v1/stores/s1/commands", headers=auth(ANN), json={
            "name": "unlock", "target": "V1", "args": {"door": 1}, "reason": "restock"})
        assert r.status_code == 403 and "allowed roles: hq-admin)" in r.json()["detail"]
    env = CloudSettings.from_env({"STOREFLEET_SENSITIVE_COMMAND_ROLES": "hq-admin, field-tech"})
    assert env.sensitive_command_roles == {Role.HQ_ADMIN, Role.FIELD_TECH}
    assert CloudSettings.from_env({}).sensitive_command_roles == {
        Role.HQ_ADMIN, Role.STORE_MANAGER}
    with pytest.raises(ValueError, match="device role may not send sensitive"):
        CloudSettings.from_env({"STOREFLEET_SENSITIVE_COMMAND_ROLES": "device"})
    with pytest.raises(ValueError, match="token name"):
        TokenGrant(role=Role.HQ_ADMIN, name="ann smith")


def test_a_rollout_offer_is_sent_by_the_system(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    upgrade(engine)
    sessions = make_session_factory(writer(engine))
    clock, publisher = ManualClock(), MemoryPublisher()
    offerer = RolloutOfferer(sessions=sessions, reader=make_session_factory(engine),
                             publisher=publisher, clock=clock,
                             metrics=RolloutMetrics(CollectorRegistry()))
    sha = "cd" * 32
    with sessions.begin() as session:
        session.add(Store(store_id="s1"))
        session.add(Artifact(sha256=sha, kind="firmware", target="firmware:vending/cab-8",
                             version="2.0.0", size=1, created_ms=0, signed={}))
        rollout_id = create(session, RolloutPlan(sha256=sha, device="vend-1", stores=["s1"]),
                            now_ms=clock.now_ms()).id
    assert asyncio.run(offerer.tick()) == 1
    (offer,) = publisher.messages
    msg = decode(offer.payload, CommandMsg)
    assert msg.sender is not None
    assert (msg.sender.name, msg.sender.role) == (f"rollout:{rollout_id}", "system")
    with sessions() as session:
        row = session.get(Command, msg.cmd_id)
        assert row is not None
        assert (row.sender, row.sender_role, row.reason) == (
            f"rollout:{rollout_id}", "system", None)
    engine.dispose()
