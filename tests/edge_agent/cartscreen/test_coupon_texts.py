"""A coupon the cart screen reads back from the ledger (the member's coupon issued on
another cart, in an earlier session, before a restart) shows the texts of the trigger rule
that issued it, not its engine code ("GROCERY5")."""

from __future__ import annotations

from tests.edge_agent.cartscreen.rig import Rig

GROCERY = {"title": "5 off your basket", "title_zh": "整单立减5元",
           "body": "Thanks for browsing our grocery aisles.", "body_zh": "感谢您光临杂货区。"}


async def test_a_member_coupon_from_another_cart_shows_its_rules_texts(rig: Rig) -> None:
    await rig.session("C1", "sess-1", qr="SFM:M0001")
    [code] = await rig.dwell("C1", "sess-1", "M0001", 3)
    # The member signs into another cart: its screen knows the code only from the ledger.
    await rig.session("C2", "sess-2", qr="SFM:M0001")
    state = (await rig.http.get("/api/cart/C2/state")).json()
    [coupon] = state["coupons"]
    assert coupon["code"] == code and coupon["engine_code"] == "GROCERY5"
    assert {k: coupon[k] for k in GROCERY} == GROCERY
    [entry] = state["wallet"]
    assert {k: entry[k] for k in GROCERY} == GROCERY and entry["count"] == 1

    # Once no rule in force issued it (the store's override turns every rule off), its
    # engine code is all the screen has to show.
    rig.in_aisle.set_rules([])
    await rig.session("C3", "sess-3", qr="SFM:M0001")
    [orphan] = (await rig.http.get("/api/cart/C3/state")).json()["coupons"]
    assert orphan["code"] == code and orphan["title"] == "GROCERY5"
    assert orphan["title_zh"] == orphan["body"] == ""
