"""``order_status`` events through ingest (BatchProcessor + post-commit hooks): the state
machine, idempotency by event id, cancel restoring stock; offline coupon ranges:
allocation, reconciliation, double use flagged once."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from cloud.db.models_orders import CouponFlag, OfflineRedemption
from cloud.ingest.batch import BatchProcessor
from cloud.ingest.hooks import PostCommitHooks
from cloud.orders import hooks as order_hooks
from cloud.orders.metrics import OrderMetrics
from protocols import topics
from protocols.clock import ManualClock
from tests.cloud.conftest import ADMIN, DEVICE, auth, metric
from tests.cloud.orders.test_orders_api import order_body, setup_stores

_seq = itertools.count(1)


def event(store: str, kind: str, event_id: str, data: dict[str, Any],
          ts: int = 1_767_225_600_000) -> tuple[str, bytes]:
    body = {"v": 1, "id": event_id, "kind": kind, "store_id": store, "seq": next(_seq),
            "ts": ts, "data": data}
    return topics.evt(store, kind), json.dumps(body).encode()


def status(store: str, event_id: str, order_id: str, new: str) -> tuple[str, bytes]:
    return event(store, "order_status", event_id,
                 {"v": 1, "order_id": order_id, "status": new, "ts": 1_767_225_600_000})


def processor(client: httpx.AsyncClient, clock: ManualClock) -> tuple[BatchProcessor,
                                                                       CollectorRegistry]:
    reg = CollectorRegistry()
    hooks = PostCommitHooks(registry=reg)
    order_hooks.register(hooks, metrics=OrderMetrics(reg))
    app = client.app  # type: ignore[attr-defined]
    return BatchProcessor(app.state.cloud.writer, clock=clock, max_payload=65_536,
                          hooks=hooks), reg


async def test_status_state_machine_idempotent_and_cancel_restores_stock(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    await setup_stores(client, {"S-mitte": {"milk": 4, "bread": 2}})
    ids = []
    for n in range(2):
        r = await client.post("/api/v1/orders", headers=auth(ADMIN),
                              json=order_body(idempotency_key=f"status-key-{n}"))
        ids.append(r.json()["order_id"])
    a, b = ids
    proc, reg = processor(client, clock)
    proc.process([status("S-mitte", "e1", a, "accepted"),
                  status("S-mitte", "e2", a, "picking"),
                  status("S-mitte", "e2", a, "picking"),     # duplicate in the batch
                  status("S-mitte", "e3", a, "accepted"),    # backwards: illegal
                  status("S-mitte", "e4", a, "ready"),
                  status("S-mitte", "e5", a, "ready"),       # re-reported: noop
                  status("S-east", "e6", a, "handed_over"),  # another store: refused
                  status("S-mitte", "e7", a, "out_for_delivery"),  # pickup order: illegal
                  status("S-mitte", "e8", a, "handed_over"),
                  status("S-mitte", "e9", "no-such-order", "accepted"),
                  event("S-mitte", "order_status", "e10", {"order_id": a})])  # bad payload
    proc.process([status("S-mitte", "e8", a, "handed_over")])  # redelivered later
    order = (await client.get(f"/api/v1/orders/{a}", headers=auth(ADMIN))).json()
    assert order["status"] == "handed_over"
    outcomes = [(h["event_id"], h["outcome"]) for h in order["history"]]
    assert outcomes == [("e1", "applied"), ("e2", "applied"), ("e3", "illegal"),
                        ("e4", "applied"), ("e5", "noop"), ("e6", "wrong_store"),
                        ("e7", "illegal"), ("e8", "applied")]
    count = lambda o: metric(reg, "storefleet_order_status_events_total", outcome=o)  # noqa: E731
    assert (count("applied"), count("duplicate"), count("illegal"), count("noop"),
            count("unknown_order"), count("bad_payload")) == (4, 2, 2, 1, 1, 1)

    # Cancelling b gives its units back; a cancel after handover is refused.
    proc.process([status("S-mitte", "c1", b, "accepted"), status("S-mitte", "c2", b,
                                                                  "cancelled"),
                  status("S-mitte", "c3", a, "cancelled")])
    stock = (await client.get("/api/v1/stores/S-mitte/stock", headers=auth(ADMIN))).json()
    assert stock["levels"] == {"bread": 1, "milk": 2}  # a's units stay sold
    assert (await client.get(f"/api/v1/orders/{a}", headers=auth(ADMIN))).json()[
        "status"] == "handed_over"


async def test_coupon_ranges_reconcile_and_flag_double_use(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    r = await client.post("/api/v1/stores/S-mitte/coupon-ranges", headers=auth(ADMIN),
                          json={"engine_code": "CMP-welcome", "count": 50, "ttl_days": 7})
    assert r.status_code == 201, r.text
    rng = r.json()
    listed = (await client.get("/api/v1/stores/S-mitte/coupon-ranges",
                               headers=auth(DEVICE))).json()["ranges"]
    assert [x["range_id"] for x in listed] == [rng["range_id"]]
    code = f"{rng['prefix']}{7:06d}"

    def redeemed(store: str, event_id: str, code: str, ts: int = 1_767_225_600_000
                 ) -> tuple[str, bytes]:
        return event(store, "coupon_redeemed", event_id,
                     {"source": "range", "code": code, "sale_id": f"sale-{event_id}",
                      "offline": True}, ts=ts)

    proc, reg = processor(client, clock)
    proc.process([redeemed("S-mitte", "r1", code),
                  redeemed("S-mitte", "r1", code),              # redelivery
                  redeemed("S-mitte", "r2", code),              # used twice: flagged
                  redeemed("S-east", "r3", f"{rng['prefix']}{8:06d}"),  # not S-east's
                  redeemed("S-mitte", "r4", f"{rng['prefix']}{51:06d}"),  # past the range
                  redeemed("S-mitte", "r5", f"{rng['prefix']}{9:06d}",
                           ts=clock.now_ms() + 8 * 86_400_000),  # after expiry
                  event("S-mitte", "coupon_redeemed", "r6", {"code": "MEMBER1"})])  # not ours
    proc.process([redeemed("S-mitte", "r2", code)])  # the flagged one redelivered
    app = client.app  # type: ignore[attr-defined]
    with app.state.cloud.reader() as s:
        used = {r.code: r.event_id for r in s.scalars(select(OfflineRedemption))}
        flags = {(f.event_id, f.reason, f.first_event_id) for f in s.scalars(select(CouponFlag))}
    assert used == {code: "r1"}
    assert flags == {("r2", "double_use", "r1"), ("r3", "not_allocated", None),
                     ("r4", "not_allocated", None), ("r5", "expired", None)}
    assert metric(reg, "storefleet_offline_coupon_flags_total", reason="double_use") == 1
    assert metric(reg, "storefleet_offline_coupon_redemptions_total") == 1
    api_flags = (await client.get("/api/v1/coupon-flags?reason=double_use",
                                  headers=auth(ADMIN))).json()
    assert [f["code"] for f in api_flags] == [code]
