"""Assistants, join by QR and the member at the counter through the API, on SQLite and
PostgreSQL: a member who joins with an assistant's code belongs to that store and that
assistant (once, however often the join is sent); refused codes are clear 4xx problems,
counted; an assistant sees only their own store."""

from __future__ import annotations

import pytest

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.settings import CloudSettings
from protocols import membercode
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, api_client, auth, metric
from tests.cloud.staff.helpers import (
    ANN,
    BOB,
    CARL,
    GHOST,
    MANAGER_S001,
    NOW,
    SECRET,
    born,
    join,
    join_code,
    register,
    staff_settings,
)


def test_an_assistant_token_is_one_named_store() -> None:
    for grant in ({"role": "store-assistant", "stores": ["S001"]},  # no name
                  {"role": "store-assistant", "stores": ["S001", "S002"], "name": "ann"},
                  {"role": "store-assistant", "regions": ["north"], "name": "ann"},
                  {"role": "store-assistant", "name": "ann"}):
        with pytest.raises(ValueError, match="store-assistant"):
            CloudSettings.model_validate({"api_tokens": {"a-long-enough-token": grant},
                                          "require_token_scope": False})


async def test_join_by_qr_binds_store_and_assistant(db_url: str) -> None:
    born(db_url, "S001", "S002")
    clock = ManualClock(NOW)
    app = create_app(staff_settings(db_url), publisher=MemoryPublisher(), clock=clock)
    reg = app.state.cloud.registry
    async with api_client(app) as c:
        assert (await register(c, "S001", "ann", "Ann", token=MANAGER_S001)).status_code == 201
        assert (await register(c, "S001", "ann", "Ann B.")).status_code == 200  # renamed
        assert (await register(c, "S001", "bob", "Bob")).status_code == 201
        assert (await register(c, "S002", "carl", "Carl")).status_code == 201
        r = await register(c, "S002", "zoe", "Zoe", token=MANAGER_S001)
        assert r.status_code == 403 and r.json()["type"].endswith("forbidden_store")
        r = await register(c, "S002", "ann", "Ann")  # one person, one store
        assert r.status_code == 409, r.text
        r = await register(c, "S001", "dan", "Dan", token=ANN)  # assistants do not hire
        assert r.status_code == 403

        me = (await c.get("/api/v1/staff/me", headers=auth(ANN))).json()
        assert (me["assistant_id"], me["display_name"], me["stores"]) == ("ann", "Ann B.",
                                                                           ["S001"])
        r = await c.get("/api/v1/staff/me", headers=auth(GHOST))
        assert r.status_code == 403 and r.json()["type"].endswith("unknown_assistant")
        assert (await c.get("/api/v1/stores", headers=auth(ANN))).status_code == 403

        code = await join_code(c, ANN, "S001")
        r = await c.post("/api/v1/staff/stores/S002/join-code", headers=auth(ANN), json={})
        assert r.status_code == 403  # another store's code
        r = await c.post("/api/v1/staff/stores/S001/join-code", headers=auth(ANN),
                         json={"assistant_id": "bob"})
        assert r.status_code == 403  # another assistant's code
        bob_code = await join_code(c, ADMIN, "S001", assistant_id="bob")

        body = {"code": code, "join_id": "join-1", "phone": "+49 170 5550001",
                "birthday": "12-03"}
        first = await c.post("/api/v1/staff/join", headers=auth(ADMIN), json=body)
        assert first.status_code == 201, first.text
        again = await c.post("/api/v1/staff/join", headers=auth(ADMIN), json=body)
        assert again.status_code == 200 and again.json()["replayed"] is True
        member = first.json()["member_id"]
        assert again.json()["member_id"] == member
        assert (first.json()["store_id"], first.json()["assistant_id"]) == ("S001", "ann")
        assert metric(reg, "storefleet_staff_joins_total", result="created") == 1
        assert metric(reg, "storefleet_staff_joins_total", result="replayed") == 1
        r = await c.post("/api/v1/staff/join", headers=auth(ANN), json=body)
        assert r.status_code == 403  # the member app's backend joins, not a store token
        r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                         json={**body, "join_id": "join-2"})
        assert r.status_code == 409, r.text  # that phone is a member already
        r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                         json={"code": code, "join_id": "join-3", "birthday": "02-30"})
        assert r.status_code == 422, r.text

        # Refused codes: each a clear problem, counted by reason.
        head, payload, mac = code.split(".")
        flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
        other_store = bob_code.split(".")[1]
        refusals = {
            f"{head}.{payload}.{flipped}": (403, "join_forged"),
            f"{head}.{other_store}.{mac}": (403, "join_forged"),  # payload swapped
            "SFJ1.bm90IGEgY29kZQ.AAAA": (422, "join_malformed"),
            "hello": (422, "join_malformed"),
        }
        for text, (status, reason) in refusals.items():
            r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                             json={"code": text, "join_id": "join-bad"})
            assert (r.status_code, r.json()["type"].rsplit("/", 1)[-1]) == (status, reason)
            assert r.headers["content-type"] == "application/problem+json"
        assert metric(reg, "storefleet_staff_refused_total", reason="join_forged") == 2
        assert metric(reg, "storefleet_staff_refused_total", reason="join_malformed") == 2

        r = await c.delete("/api/v1/staff/stores/S001/assistants/bob", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["active"] is False
        r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                         json={"code": bob_code, "join_id": "join-bob"})
        assert r.status_code == 410 and r.json()["type"].endswith("join_retired")
        r = await c.get("/api/v1/staff/me", headers=auth(BOB))
        assert r.status_code == 403 and r.json()["type"].endswith("retired_assistant")

        clock.advance(86_400)  # a day later the code shown yesterday has expired
        r = await c.post("/api/v1/staff/join", headers=auth(ADMIN),
                         json={"code": code, "join_id": "join-late"})
        assert r.status_code == 410 and r.json()["type"].endswith("join_expired")
        assert metric(reg, "storefleet_staff_refused_total", reason="join_expired") == 1

        # The member at the counter: by id at the store that knows them...
        r = await c.post("/api/v1/staff/stores/S001/counter", headers=auth(ANN),
                         json={"member_id": member})
        assert r.status_code == 200, r.text
        view = r.json()
        assert (view["home_store"], view["recruited_by"], view["birthday"]) == (
            "S001", "ann", "12-03")
        assert (view["points"], view["coupons"], view["last_purchases"]) == (0, [], [])
        # ... not another store's path, nor by id at a store that does not know them.
        r = await c.post("/api/v1/staff/stores/S001/counter", headers=auth(CARL),
                         json={"member_id": member})
        assert r.status_code == 403 and r.json()["type"].endswith("forbidden_store")
        r = await c.post("/api/v1/staff/stores/S002/counter", headers=auth(CARL),
                         json={"member_id": member})
        assert r.status_code == 404
        # By the member's code (their phone, at the counter): any store, once per code.
        now = clock.now_ms()
        key = membercode.day_key(SECRET.encode(), member, day=membercode.day_of(now))
        shown = membercode.make(key, member, now_ms=now)
        r = await c.post("/api/v1/staff/stores/S002/counter", headers=auth(CARL),
                         json={"code": shown})
        assert r.status_code == 200 and r.json()["recruited_by"] is None  # not S002's
        r = await c.post("/api/v1/staff/stores/S002/counter", headers=auth(CARL),
                         json={"code": shown})
        assert r.status_code == 409 and r.json()["type"].endswith("code_replayed")
        forged = membercode.make(b"x" * 16, member, now_ms=now)
        r = await c.post("/api/v1/staff/stores/S001/counter", headers=auth(ANN),
                         json={"code": forged})
        assert r.status_code == 403 and r.json()["type"].endswith("code_forged")
        r = await c.post("/api/v1/staff/stores/S001/counter", headers=auth(ANN),
                         json={"code": shown, "member_id": member})
        assert r.status_code == 422
        assert metric(reg, "storefleet_staff_refused_total", reason="code_replayed") == 1


async def test_join_codes_need_the_secret(db_url: str) -> None:
    born(db_url, "S001")
    settings = staff_settings(db_url).model_copy(update={"member_code_secret": None})
    app = create_app(settings, publisher=MemoryPublisher(), clock=ManualClock(NOW))
    async with api_client(app) as c:
        assert (await register(c, "S001", "ann", "Ann")).status_code == 201
        r = await c.post("/api/v1/staff/stores/S001/join-code", headers=auth(ANN), json={})
        assert r.status_code == 503 and r.json()["type"].endswith("not_configured")


async def test_join_needs_no_phone_and_lands_in_the_member_list(db_url: str) -> None:
    born(db_url, "S001")
    app = create_app(staff_settings(db_url), publisher=MemoryPublisher(),
                     clock=ManualClock(NOW))
    async with api_client(app) as c:
        await register(c, "S001", "ann", "Ann")
        member = await join(c, await join_code(c, ANN, "S001"), "j-nophone")
        r = await c.get(f"/api/v1/members/{member}", headers=auth(ADMIN))
        assert r.status_code == 200 and r.json()["created_ms"] == NOW
