"""Event ids are unique within a store only (decision 0026): two stores publishing a sale
with the same id both keep their event and both get its effects (audit, points), through
real Mosquitto and the real ingest worker; a redelivery of either is still a duplicate."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, make_session_factory, upgrade
from cloud.db.engine import writer
from cloud.db.models import Event
from cloud.db.models_loyalty import PointsEntry, SaleAudit
from cloud.ingest.hooks import PostCommitHooks
from cloud.loyalty.ingest import LoyaltyHook
from cloud.loyalty.members import create_member
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import RepriceHook
from protocols import topics
from tests.cloud.conftest import make_settings, make_worker, metric, publish, running, wait_until
from tests.cloud.loyalty.conftest import HASH_KEY
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

SAME_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # what two stores' tills both chose


def sale(store: str, member: str, *, paid: int, points: int) -> tuple[str, bytes]:
    body = {"v": 1, "id": SAME_ID, "kind": "sale", "store_id": store, "seq": 1,
            "ts": 1_767_225_600_000,
            "data": {"member_id": member, "totals": {"paid": paid, "points_earned": points}}}
    return topics.evt(store, "sale"), json.dumps(body).encode()


def hooks(registry: CollectorRegistry) -> PostCommitHooks:
    out = PostCommitHooks(registry=registry)
    out.register("loyalty", {"sale", "refund"},
                 LoyaltyHook(program=LoyaltyProgram(), metrics=LoyaltyMetrics(registry)))
    out.register("reprice", {"sale"}, RepriceHook(metrics=PromotionMetrics(registry)))
    return out


def balance(sessions: sessionmaker[Session], member: str) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.coalesce(func.sum(PointsEntry.points), 0))
                            .where(PointsEntry.member_id == member)) or 0)


async def test_two_stores_same_event_id_both_kept_with_their_effects(
    mosquitto: Mosquitto, db_url: str
) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(writer(engine))
    try:
        with sessions.begin() as s:
            m1 = create_member(s, now_ms=1, key=HASH_KEY).member_id
            m2 = create_member(s, now_ms=1, key=HASH_KEY).member_id
        registry = CollectorRegistry()
        worker = make_worker(make_settings(db_url, mosquitto.url), registry,
                             hooks=hooks(registry))
        first = sale("S002", m2, paid=2_000, points=20)   # S002 publishes id X first,
        second = sale("S001", m1, paid=1_000, points=10)  # then S001's genuine event X
        async with running(worker):
            await publish(mosquitto.url, [first])
            await wait_until(lambda: metric(registry, "storefleet_ingest_messages_total",
                                            channel="evt") >= 1)
            await publish(mosquitto.url, [second, first, second])  # two redeliveries
            await wait_until(lambda: metric(registry, "storefleet_ingest_messages_total",
                                            channel="evt") >= 4)
            await wait_until(lambda: balance(sessions, m1) == 10 and balance(sessions, m2)
                             == 20)
        assert metric(registry, "storefleet_ingest_events_stored_total") == 2
        assert metric(registry, "storefleet_ingest_duplicates_total") == 2
        assert metric(registry, "storefleet_ingest_hook_errors_total", hook="loyalty") == 0
        with sessions() as s:
            rows = {e.store_id: e.data["totals"]["paid"] for e in s.scalars(
                select(Event).where(Event.id == SAME_ID))}
            audits = {a.store_id: a.paid for a in s.scalars(
                select(SaleAudit).where(SaleAudit.event_id == SAME_ID))}
        assert rows == {"S001": 1_000, "S002": 2_000}  # each store's own data
        assert audits == {"S001": 1_000, "S002": 2_000}  # both sales audited
        assert (balance(sessions, m1), balance(sessions, m2)) == (10, 20)  # once each
    finally:
        engine.dispose()
