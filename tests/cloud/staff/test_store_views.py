"""The store's views through the API, on SQLite and PostgreSQL: birthdays this week,
lapsed members (paged) with the one-tap coupon (once per lapse), and the store's and
its assistants' figures over a period, from sales that came in through ingest."""

from __future__ import annotations

from typing import Any

import httpx

from cloud.main import create_app
from cloud.publish import MemoryPublisher
from cloud.staff.lists import window_days
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, api_client, auth, metric
from tests.cloud.staff.helpers import (
    ANN,
    BOB,
    CARL,
    DAY_MS,
    NOW,
    Sales,
    born,
    join,
    join_code,
    register,
    staff_settings,
)

T0 = NOW - 100 * DAY_MS  # when most members joined


async def pages(c: httpx.AsyncClient, url: str, token: str) -> list[list[Any]]:
    """Every page of a listing, following its ``Link: <...>; rel="next"``."""
    out = []
    while True:
        r = await c.get(url, headers=auth(token))
        assert r.status_code == 200, r.text
        out.append(r.json())
        link = r.headers.get("Link")
        if link is None:
            assert "X-Next-Cursor" not in r.headers
            return out
        url = link.split(">", 1)[0].lstrip("<")
        assert url.endswith("cursor=" + r.headers["X-Next-Cursor"])


def test_birthday_window_wraps_the_year_and_keeps_29_february() -> None:
    new_year = window_days(NOW + 28 * DAY_MS, 7)  # from 30 December
    assert new_year == {1230: 0, 1231: 1, 101: 2, 102: 3, 103: 4, 104: 5, 105: 6}
    feb = window_days(1_803_816_000_000, 2)  # 2027-02-28, no 29th that year
    assert feb == {228: 0, 229: 0, 301: 1}


async def test_lists_coupon_and_rankings(db_url: str) -> None:
    born(db_url, "S001", "S002")
    clock = ManualClock(T0)
    settings = staff_settings(db_url)
    app = create_app(settings, publisher=MemoryPublisher(), clock=clock)
    reg = app.state.cloud.registry
    sales = Sales(db_url, settings)
    try:
        async with api_client(app) as c:
            for store, who, name in (("S001", "ann", "Ann"), ("S001", "bob", "Bob"),
                                     ("S001", "dan", "Dan"), ("S002", "carl", "Carl")):
                assert (await register(c, store, who, name)).status_code == 201
            ann, bob = await join_code(c, ANN, "S001"), await join_code(c, BOB, "S001")
            m1 = await join(c, ann, "j1", birthday="12-03")
            m2 = await join(c, ann, "j2", birthday="12-09")
            m3 = await join(c, bob, "j3", birthday="12-08")
            m5 = await join(c, await join_code(c, CARL, "S002"), "j5", birthday="12-02")
            r = await c.post("/api/v1/members", headers=auth(ADMIN), json={})
            m4 = r.json()["member_id"]
            r = await c.put(f"/api/v1/members/{m4}/home-store", headers=auth(ADMIN),
                            json={"store_id": "S001"})
            assert r.status_code == 200, r.text
            clock.advance((NOW - T0 - DAY_MS) / 1000)
            await join(c, await join_code(c, ANN, "S001"), "j6")  # m6, yesterday
            clock.advance(DAY_MS / 1000)
            assert clock.now_ms() == NOW

            sales.sell("S001", "e1", member=m1, paid=900, ts=NOW - 40 * DAY_MS)
            sales.sell("S002", "e2", member=m2, paid=700, ts=NOW - 5 * DAY_MS)
            sales.sell("S001", "e3", member=m4, paid=1500, ts=NOW - 10 * DAY_MS)
            sales.sell("S001", "e4", paid=2000, ts=NOW - 2 * DAY_MS)
            sales.sell("S001", "e5", member=m2, paid=1200, ts=NOW - 3 * DAY_MS)
            sales.sell("S001", "e5", member=m2, paid=1200, ts=NOW - 3 * DAY_MS)  # again
            sales.sell("S002", "e6", paid=5000, ts=NOW - 1 * DAY_MS)
            assert metric(sales.registry, "storefleet_staff_sales_indexed_total",
                          result="indexed") == 6
            assert metric(sales.registry, "storefleet_staff_sales_indexed_total",
                          result="duplicate") == 1

            # Birthdays this week (2 to 8 December), soonest first, two a page.
            got = await pages(c, "/api/v1/staff/stores/S001/birthdays?limit=2", ANN)
            assert [[(b["member_id"], b["birthday"], b["in_days"]) for b in p]
                    for p in got] == [[(m1, "12-03", 1), (m3, "12-08", 6)]]
            got = await pages(c, "/api/v1/staff/stores/S001/birthdays?limit=1&days=8", ANN)
            assert [b["member_id"] for p in got for b in p] == [m1, m3, m2]
            assert [len(p) for p in got] == [1, 1, 1]
            r = await c.get("/api/v1/staff/stores/S002/birthdays", headers=auth(CARL))
            assert [b["member_id"] for b in r.json()] == [m5]  # today, at S002

            # Lapsed (no purchase in 30 days, at any store): m3 never bought (joined 100
            # days ago), m1 bought 40 days ago; m2 bought at S002 5 days ago, m4 10 days
            # ago, m6 joined yesterday.
            url = "/api/v1/staff/stores/S001/lapsed?days=30&limit=1"
            got = await pages(c, url, BOB)
            rows = [row for p in got for row in p]
            assert [(x["member_id"], x["last_purchase_ms"], x["lapse_ms"]) for x in rows] == [
                (m3, None, T0), (m1, NOW - 40 * DAY_MS, NOW - 40 * DAY_MS)]
            assert [len(p) for p in got] == [1, 1] and rows[1]["coupon"] is None
            r = await c.get("/api/v1/staff/stores/S001/lapsed?days=30", headers=auth(CARL))
            assert r.status_code == 403

            # The one-tap coupon: needs the win-back campaign, then once per lapse.
            give = f"/api/v1/staff/stores/S001/lapsed/{m1}/coupon?days=30"
            r = await c.post(give, headers=auth(ANN))
            assert r.status_code == 409 and r.json()["type"].endswith("no_winback_campaign")
            r = await c.post("/api/v1/campaigns", headers=auth(ADMIN), json={
                "campaign_id": "winback", "name": "We miss you", "trigger": "manual",
                "benefit": {"amount_off": 500}, "validity_days": 14})
            assert r.status_code == 201, r.text
            first = await c.post(give, headers=auth(ANN))
            assert first.status_code == 201, first.text
            again = await c.post(give, headers=auth(BOB))
            assert again.status_code == 200 and again.json()["replayed"] is True
            code = first.json()["code"]
            assert again.json()["code"] == code and again.json()["issued_by"] == "ann"
            assert first.json()["expires_ms"] == NOW + 14 * DAY_MS
            owned = (await c.get(f"/api/v1/members/{m1}/coupons", headers=auth(ADMIN))).json()
            assert [x["code"] for x in owned] == [code]
            rows = (await c.get(url.replace("&limit=1", ""), headers=auth(ANN))).json()
            assert [x["coupon"] for x in rows] == [None, code]
            r = await c.post(f"/api/v1/staff/stores/S001/lapsed/{m4}/coupon?days=30",
                             headers=auth(ANN))
            assert r.status_code == 409 and r.json()["type"].endswith("not_lapsed")
            r = await c.post(f"/api/v1/staff/stores/S001/lapsed/{m5}/coupon?days=30",
                             headers=auth(ANN))
            assert r.status_code == 404  # S002's member
            r = await c.post(f"/api/v1/staff/stores/S002/lapsed/{m5}/coupon", headers=auth(ANN))
            assert r.status_code == 403
            assert metric(reg, "storefleet_staff_coupons_total", result="issued") == 1
            assert metric(reg, "storefleet_staff_coupons_total", result="replayed") == 1
            assert metric(reg, "storefleet_staff_refused_total", reason="not_lapsed") == 1

            # The member at the counter now shows the coupon and the purchases here.
            view = (await c.post("/api/v1/staff/stores/S001/counter", headers=auth(ANN),
                                 json={"member_id": m2})).json()
            assert [(p["event_id"], p["paid"]) for p in view["last_purchases"]] == [
                ("e5", 1200)]  # not e2: that was at S002
            view = (await c.post("/api/v1/staff/stores/S001/counter", headers=auth(ANN),
                                 json={"member_id": m1})).json()
            assert [x["code"] for x in view["coupons"]] == [code]

            r = await c.post(f"/api/v1/coupons/{code}/redeem", headers=auth(ADMIN),
                             json={"store_id": "S001", "member_id": m1})
            assert r.status_code == 200, r.text

            # Rankings over 30 days. S001: sales 1500 + 2000 + 1200 (e1 is older),
            # one new member (m6), one coupon redeemed; S002: 700 + 5000, none, none.
            standing = (await c.get("/api/v1/staff/stores/S001/rankings/store?days=30",
                                    headers=auth(ANN))).json()
            assert {k: standing[k] for k in ("sales", "new_members", "coupons_redeemed")} == {
                "sales": {"value": 4700, "rank": 2, "of": 2},
                "new_members": {"value": 1, "rank": 1, "of": 2},
                "coupons_redeemed": {"value": 1, "rank": 1, "of": 2}}
            standing = (await c.get("/api/v1/staff/stores/S002/rankings/store?days=30",
                                    headers=auth(CARL))).json()
            assert standing["sales"] == {"value": 5700, "rank": 1, "of": 2}
            assert standing["new_members"] == {"value": 0, "rank": 2, "of": 2}
            standing = (await c.get("/api/v1/staff/stores/S001/rankings/store?days=366",
                                    headers=auth(ANN))).json()
            assert standing["sales"]["value"] == 5600 and standing["new_members"]["value"] == 5

            # Assistants: ann's recruits bought 1200 here (e5; e2 was at S002, e1 too
            # old), joined one (m6) and redeemed one coupon; bob and dan nothing.
            got = await pages(c, "/api/v1/staff/stores/S001/rankings/assistants?days=30"
                              "&by=sales&limit=2", BOB)
            assert [[(a["assistant_id"], a["sales"], a["new_members"], a["coupons_redeemed"],
                      a["rank"]) for a in p] for p in got] == [
                [("ann", 1200, 1, 1, 1), ("bob", 0, 0, 0, 2)], [("dan", 0, 0, 0, 2)]]
            got = await pages(c, "/api/v1/staff/stores/S001/rankings/assistants?days=366"
                              "&by=new_members&limit=1", ANN)
            assert [(a["assistant_id"], a["new_members"], a["rank"]) for p in got
                    for a in p] == [("ann", 3, 1), ("bob", 1, 2), ("dan", 0, 3)]
            r = await c.get("/api/v1/staff/stores/S002/rankings/assistants", headers=auth(ANN))
            assert r.status_code == 403
            r = await c.get("/api/v1/staff/stores/S001/rankings/assistants?cursor=junk",
                            headers=auth(ANN))
            assert r.status_code == 422 and r.json()["type"].endswith("bad_cursor")
    finally:
        sales.close()
