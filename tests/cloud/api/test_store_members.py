"""Members at the store through the API (decision 0064), on SQLite and PostgreSQL: a
store's member snapshot published in its signed content manifest, spends authorised
for a box idempotently and only for its own store, the member app's day keys."""

from __future__ import annotations

import json

import httpx
import pytest

from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, membercode, topics
from protocols.clock import ManualClock
from protocols.content import ContentManifest
from protocols.member_snapshot import MemberSnapshot
from protocols.messages import Birth
from protocols.signed import SignatureError, load_public_keys, verify_signed
from tests.cloud.conftest import ADMIN, DEVICE_S1, api_client, auth, make_settings

SECRET = "test-member-code-secret-0001"


def born(db_url: str, *stores: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        BatchProcessor(make_session_factory(writer(engine)), clock=ManualClock(),
                       max_payload=65536).process([
            (topics.state(s), encode(Birth(bd_seq=1, ts=1, agent_version="9", devices=[])))
            for s in stores])
    finally:
        engine.dispose()


async def member(c: httpx.AsyncClient, *, points: int = 0, sv: int = 0) -> str:
    r = await c.post("/api/v1/members", headers=auth(ADMIN), json={"phone": "+4917012345"})
    assert r.status_code == 201, r.text
    mid = str(r.json()["member_id"])
    if points:
        r = await c.post(f"/api/v1/members/{mid}/points/earn", headers=auth(ADMIN),
                         json={"points": points, "op_id": "seed"})
        assert r.status_code in (200, 201), r.text
    if sv:
        r = await c.post(f"/api/v1/members/{mid}/stored-value", headers=auth(ADMIN),
                         json={"kind": "load", "amount": sv, "ref": "seed"})
        assert r.status_code in (200, 201), r.text
    return mid


async def test_snapshot_published_signed_with_the_stores_members(db_url: str) -> None:
    born(db_url, "s1", "s2")
    publisher = MemoryPublisher()
    clock = ManualClock()
    app = create_app(make_settings(db_url, member_hash_key="test-member-hash-key-0001",
                                   member_code_secret=SECRET), publisher=publisher, clock=clock)
    async with api_client(app) as c:
        anna = await member(c, points=120, sv=900)
        r = await c.put(f"/api/v1/members/{anna}/home-store", headers=auth(DEVICE_S1),
                        json={"store_id": "s1"})
        assert r.status_code == 200, r.text
        r = await c.put(f"/api/v1/members/{anna}/home-store", headers=auth(DEVICE_S1),
                        json={"store_id": "s2"})
        assert r.status_code == 403, r.text  # a box binds members to its own store only
        r = await c.post("/api/v1/member-snapshots/publish", headers=auth(DEVICE_S1), json={})
        assert r.status_code == 403
        r = await c.post("/api/v1/member-snapshots/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 201, r.text
        assert r.json()["members"] == {"s1": 1, "s2": 0}
        keys = (await c.get("/api/v1/promotions/keys", headers=auth(ADMIN))).json()
    signed = json.loads(publisher.retained[topics.content_manifest("s1")].payload)
    trusted = load_public_keys([k["public_key"] for k in keys])
    manifest = ContentManifest.model_validate(verify_signed(signed, trusted))
    doc = MemberSnapshot.model_validate(manifest.documents["members"])
    got = doc.members[anna]
    assert (got.home, got.points, got.stored_value) == (True, 120, 900)
    # the box checks the member's code with the key it was given, offline
    day = membercode.day_of(clock.now_ms())
    code = membercode.make(membercode.day_key(SECRET.encode(), anna, day=day), anna,
                           now_ms=clock.now_ms())
    ok = membercode.verify(code, keys=lambda m, d: membercode.decode_key(
        doc.members[m].keys[str(d)]), now_ms=clock.now_ms(), guard=membercode.ReplayGuard())
    assert ok.member_id == anna
    # a tampered snapshot does not verify
    signed["payload"]["documents"]["members"]["members"][anna]["points"] = 10**6
    with pytest.raises(SignatureError) as err:
        verify_signed(signed, trusted)
    assert err.value.reason == "signature"


async def test_authorise_is_idempotent_and_scoped_to_the_store(db_url: str) -> None:
    born(db_url, "s1", "s2")
    app = create_app(make_settings(db_url, member_hash_key="test-member-hash-key-0001",
                                   member_code_secret=SECRET), publisher=MemoryPublisher())
    async with api_client(app) as c:
        anna = await member(c, points=100)
        url = f"/api/v1/members/{anna}/authorise"
        body = {"store_id": "s1", "spend_id": "sp-1", "unit": "points", "amount": 70,
                "spent_ms": 1}
        first = await c.post(url, headers=auth(DEVICE_S1), json=body)
        again = await c.post(url, headers=auth(DEVICE_S1), json=body)
        assert first.status_code == again.status_code == 200, first.text
        assert (first.json()["balance"], first.json()["replayed"]) == (30, False)
        assert (again.json()["balance"], again.json()["replayed"]) == (30, True)
        r = await c.post(url, headers=auth(DEVICE_S1), json=body | {"spend_id": "sp-2"})
        assert r.status_code == 409 and r.json()["type"].endswith("/insufficient_balance")
        r = await c.post(url, headers=auth(DEVICE_S1), json=body | {"amount": 5})
        assert r.status_code == 409  # the id was another spend
        r = await c.post(url, headers=auth(DEVICE_S1), json=body | {"store_id": "s2"})
        assert r.status_code == 403
        r = await c.post(url, headers=auth(DEVICE_S1), json=body | {"spend_id": "a b"})
        assert r.status_code == 422
        ledger = (await c.get(f"/api/v1/members/{anna}", headers=auth(ADMIN))).json()
        assert ledger["points_balance"] == 30
        r = await c.get(f"/api/v1/members/{anna}/code-keys", headers=auth(ADMIN))
        assert r.status_code == 200 and len(r.json()["keys"]) == 2
        r = await c.get(f"/api/v1/members/{anna}/code-keys", headers=auth(DEVICE_S1))
        assert r.status_code == 403


async def test_no_secret_no_codes(db_url: str) -> None:
    born(db_url, "s1")
    app = create_app(make_settings(db_url), publisher=MemoryPublisher())
    async with api_client(app) as c:
        r = await c.post("/api/v1/member-snapshots/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 503 and r.json()["type"].endswith("/not_configured")
