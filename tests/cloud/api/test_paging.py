"""Keyset pages of the four listings (decision 0052), on SQLite and PostgreSQL.

Rows are bulk-inserted with SQLAlchemy (no births): what is tested is the paging, and
12,000 devices through ingest would take minutes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, insert

from cloud.api.paging import MAX_LIMIT, encode_cursor
from cloud.db import make_engine, upgrade
from cloud.db.models import Device, Event, Store
from cloud.db.models_loyalty import Member, StoreRegion
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from tests.cloud.conftest import (
    ADMIN,
    MANAGER_S1,
    TECH_NORTH,
    api_client,
    auth,
    make_settings,
    metric,
)

STORES = 120
PER_STORE = 100  # 12,000 devices


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def store_id(i: int) -> str:
    return f"s{i:04d}"


def add_devices(engine: Engine, keys: list[tuple[str, str]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Device), [
            {"store_id": s, "device_id": d, "kind": "cart" if i % 3 else "esl",
             "online": i % 2 == 0} for i, (s, d) in enumerate(keys)])


def fill(engine: Engine) -> list[tuple[str, str]]:
    """12,000 devices in 120 stores (s0001 and the even stores in region north)."""
    keys = [(store_id(s), f"d{d:04d}") for s in range(STORES) for d in range(PER_STORE)]
    add_devices(engine, keys)
    with engine.begin() as conn:
        conn.execute(insert(Store), [{"store_id": store_id(s), "online": s % 2 == 0}
                                     for s in range(STORES)])
        conn.execute(insert(StoreRegion), [{"store_id": store_id(s), "region": "north"}
                                           for s in range(0, STORES, 2)])
    return keys


async def walk(c: httpx.AsyncClient, path: str, token: str, *, follow_link: bool = False,
               between: Any = None, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every row of a listing, page by page; ``between(last_row)`` runs after each page."""
    rows: list[dict[str, Any]] = []
    pages = 0
    url: str | None = path
    query: dict[str, Any] | None = dict(params)
    while url is not None:
        r = await c.get(url, params=query, headers=auth(token))
        assert r.status_code == 200, r.text
        body = r.json()
        page = body["items"] if isinstance(body, dict) else body
        rows += page
        pages += 1
        cursor = r.headers.get("X-Next-Cursor")
        link = r.headers.get("Link")
        if isinstance(body, dict):
            assert body["next"] == cursor  # events: the body's cursor is the header's
        if cursor is None:
            assert link is None
            break
        found = re.fullmatch(r'<([^>]+)>; rel="next"', link or "")
        assert found, link
        if between is not None:
            between(page[-1])
        if follow_link:  # the Link alone: same filters, same limit, the new cursor
            url, query = found[1], None  # (params={} would drop the URL's own query)
        else:
            query = {**params, "cursor": cursor}
    return rows, pages


async def test_12000_devices_each_once_while_rows_are_inserted(
    db_url: str, engine: Engine,
) -> None:
    keys = fill(engine)
    added_after: set[tuple[str, str]] = set()  # behind the walk's position: must be seen
    added_before: set[tuple[str, str]] = set()  # already passed: must not be

    def insert_some(last: dict[str, Any]) -> None:
        at = (last["store_id"], last["device_id"])
        n = len(added_after)
        new = [(at[0], f"{at[1]}-new{n}"),  # just after the position, in the same store
               (store_id(STORES + n), "d0000"),  # a store past every other
               ("s0000", f"zz{n}")]  # long passed
        add_devices(engine, new)
        for key in new:
            (added_after if key > at else added_before).add(key)

    async with api_client(create_app(make_settings(db_url),
                                     publisher=MemoryPublisher())) as c:
        first = await c.get("/api/v1/devices", headers=auth(ADMIN))
        assert len(first.json()) == 500  # the default page
        rows, pages = await walk(c, "/api/v1/devices", ADMIN, limit=1000, between=insert_some)
        seen = [(d["store_id"], d["device_id"]) for d in rows]
        assert len(seen) == len(set(seen)), "a row came twice"
        assert set(keys) <= set(seen), f"{len(set(keys) - set(seen))} rows skipped"
        assert added_after <= set(seen) and not added_before & set(seen)
        assert seen == sorted(seen) and pages >= 12
        assert len(seen) == len(keys) + len(added_after)

        # Filters hold on every page, and following the Link header alone gives the same.
        carts, pages = await walk(c, "/api/v1/devices", ADMIN, follow_link=True,
                                  kind="cart", online="true", limit=1500)
        assert pages >= 3
        assert carts and all(d["kind"] == "cart" and d["online"] for d in carts)
        again, _ = await walk(c, "/api/v1/devices", ADMIN, kind="cart", online="true",
                              limit=777)
        assert again == carts

        # One store's devices: the same pages under /stores/{id}/devices.
        s1, pages = await walk(c, "/api/v1/stores/s0001/devices", ADMIN, limit=30)
        assert [d["device_id"] for d in s1] == [f"d{d:04d}" for d in range(PER_STORE)]
        assert pages == 4


async def test_stores_events_and_members_pages(db_url: str, engine: Engine) -> None:
    fill(engine)
    with engine.begin() as conn:
        conn.execute(insert(Event), [
            {"store_id": store_id(i % 7), "id": f"e{i:05d}", "kind": "sale", "seq": i,
             "ts": 1, "data": {}, "received_ms": 1_000 + i // 10} for i in range(2_000)])
        conn.execute(insert(Member), [
            {"member_id": f"m{i:05d}", "created_ms": i, "is_distributor": i % 5 == 0}
            for i in range(1_200)])
    async with api_client(create_app(make_settings(db_url),
                                     publisher=MemoryPublisher())) as c:
        stores, pages = await walk(c, "/api/v1/stores", ADMIN, limit=50)
        assert [s["store_id"] for s in stores] == [store_id(s) for s in range(STORES)]
        assert pages == 3
        assert {(s["devices_total"], s["devices_online"]) for s in stores} == {(100, 50)}
        north, _ = await walk(c, "/api/v1/stores", ADMIN, follow_link=True, region="north",
                              limit=7)
        assert [s["store_id"] for s in north] == [store_id(s) for s in range(0, STORES, 2)]

        events, pages = await walk(c, "/api/v1/events", ADMIN, follow_link=True, limit=300)
        assert sorted(e["id"] for e in events) == [f"e{i:05d}" for i in range(2_000)]
        assert pages == 7
        order = [(e["received_ms"], e["store_id"], e["id"]) for e in events]
        assert order == sorted(order)
        # ``after``, the cursor's older name, and a cursor written before decision 0052
        # (base64url of "received_ms:store/id") both still continue where they say.
        last = events[299]
        legacy = base64.urlsafe_b64encode(
            f"{last['received_ms']}:{last['store_id']}/{last['id']}".encode()).decode()
        for name, value in (("after", legacy), ("cursor", legacy.rstrip("="))):
            page = (await c.get("/api/v1/events", params={name: value, "limit": 5},
                                headers=auth(ADMIN))).json()
            assert [e["id"] for e in page["items"]] == [e["id"] for e in events[300:305]]

        members, pages = await walk(c, "/api/v1/members", ADMIN, limit=500)
        assert [m["member_id"] for m in members] == [f"m{i:05d}" for i in range(1_200)]
        assert pages == 3 and set(members[0]) == {
            "member_id", "created_ms", "is_distributor", "referred_by", "recruited_by"}
        dist, _ = await walk(c, "/api/v1/members", ADMIN, is_distributor="true", limit=100)
        assert len(dist) == 240 and all(m["is_distributor"] for m in dist)


async def test_a_scoped_token_pages_through_its_stores_only(
    db_url: str, engine: Engine,
) -> None:
    keys = fill(engine)
    with engine.begin() as conn:
        conn.execute(insert(Event), [
            {"store_id": s, "id": f"e{i}", "kind": "sale", "seq": i, "ts": 1, "data": {},
             "received_ms": i} for i, s in enumerate(["s1", "s0000", "s1", "s0002"] * 5)])
    add_devices(engine, [("s1", f"d{d:03d}") for d in range(23)])
    async with api_client(create_app(make_settings(db_url),
                                     publisher=MemoryPublisher())) as c:
        mine, pages = await walk(c, "/api/v1/devices", MANAGER_S1, limit=5)
        assert [d["device_id"] for d in mine] == [f"d{d:03d}" for d in range(23)]
        assert {d["store_id"] for d in mine} == {"s1"} and pages == 5
        # A cursor positioned in other stores moves the page, never the scope.
        other = encode_cursor("devices", ("s0000", "d0000"))
        r = await c.get("/api/v1/devices", params={"cursor": other, "limit": 5000},
                        headers=auth(MANAGER_S1))
        assert {d["store_id"] for d in r.json()} == {"s1"}
        stores, _ = await walk(c, "/api/v1/stores", MANAGER_S1, limit=1)
        assert stores == []  # s1 has devices but no box was ever born: no stores row
        events, pages = await walk(c, "/api/v1/events", MANAGER_S1, limit=2)
        assert len(events) == 10 and {e["store_id"] for e in events} == {"s1"}
        assert pages == 5
        # A region-scoped token: the region's stores, across pages.
        north, _ = await walk(c, "/api/v1/devices", TECH_NORTH, limit=1000)
        assert len(north) == len(keys) // 2
        assert {d["store_id"] for d in north} == {store_id(s) for s in range(0, STORES, 2)}
        # Members belong to no store: a store-scoped token has none to list.
        r = await c.get("/api/v1/members", headers=auth(MANAGER_S1))
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = [
    "%%%",  # not base64url
    "abc!",
    _b64(b"not json"),
    _b64(b"\xff\xfe"),  # not UTF-8
    _b64(b'{"devices": 1}'),  # JSON, not a cursor
    _b64(b"[]"),
    encode_cursor("stores", ("s0001",)),  # another listing's
    encode_cursor("devices", ("s0001",)),  # a key of the wrong shape
    encode_cursor("devices", ("s0001", "d1", "x")),
    encode_cursor("devices", ("s0001", 7)),
    encode_cursor("devices", ("s0001", "d\x001")),  # an id no store can have
    encode_cursor("devices", ("s0001", "a/b")),
    encode_cursor("devices", ("", "d1")),
    _b64(json.dumps(["devices", "s0001", "d1"]).encode()) + "=x",  # tampered
]


async def test_a_bad_device_cursor_is_a_counted_422(db_url: str) -> None:
    registry = CollectorRegistry()
    async with api_client(create_app(make_settings(db_url), registry=registry,
                                     publisher=MemoryPublisher())) as c:
        for cursor in BAD_CURSORS:
            r = await c.get("/api/v1/devices", params={"cursor": cursor},
                            headers=auth(ADMIN))
            assert r.status_code == 422, (cursor, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["type"].endswith("/bad_cursor") and "cursor" in problem["detail"]
        assert metric(registry, "storefleet_api_rejected_total",
                      reason="bad_cursor") == len(BAD_CURSORS)


async def test_bad_cursors_and_limits_on_every_listing(db_url: str) -> None:
    registry = CollectorRegistry()
    too_big = 2**63
    bad = {
        "/api/v1/stores": [encode_cursor("stores", (1,)), encode_cursor("members", ("m1",))],
        "/api/v1/events": [encode_cursor("events", (too_big, "s1", "e1")),
                           encode_cursor("events", (True, "s1", "e1")),
                           encode_cursor("events", (-1, "s1", "e1")),
                           encode_cursor("events", ("1", "s1", "e1")),
                           _b64(f"{too_big}:s1/e1".encode()),  # the pre-0052 form
                           _b64(b"1:s1/e\x001")],
        "/api/v1/members": [encode_cursor("members", ("m1", "m2")), "@@"],
        "/api/v1/stores/s1/devices": [encode_cursor("stores", ("s1",))],
    }
    async with api_client(create_app(make_settings(db_url), registry=registry,
                                     publisher=MemoryPublisher())) as c:
        n = 0
        for path, cursors in bad.items():
            for cursor in cursors:
                r = await c.get(path, params={"cursor": cursor}, headers=auth(ADMIN))
                n += 1
                assert r.status_code == 422 and r.json()["type"].endswith("/bad_cursor"), \
                    (path, cursor, r.text)
        assert metric(registry, "storefleet_api_rejected_total", reason="bad_cursor") == n
        for path in bad:
            for limit in (0, MAX_LIMIT + 1):
                r = await c.get(path, params={"limit": limit}, headers=auth(ADMIN))
                assert r.status_code == 422 and r.json()["type"].endswith("/invalid"), path
        r = await c.get("/api/v1/events", params={"cursor": "a", "after": "a"},
                        headers=auth(ADMIN))
        assert r.status_code == 422 and "give one" in r.json()["detail"]
