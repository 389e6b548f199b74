"""Spends asked for by store boxes (cloud.loyalty.spends, decision 0064), on SQLite and
PostgreSQL: authorised all or nothing, idempotent by (store, spend id), offline spends
settled once, a shortfall owed and shown, never lost."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models_loyalty import PointsEntry, StoredValueEntry
from cloud.db.models_members import MemberSpend
from cloud.loyalty import points, spends, stored_value
from cloud.loyalty.errors import Conflict, InsufficientBalance
from protocols.clock import ManualClock
from protocols.messages import Event
from tests.cloud.loyalty.conftest import new_member


def spend(member: str, amount: int, spend_id: str = "sp-1", unit: str = "points"
          ) -> spends.Spend:
    return spends.Spend(spend_id=spend_id, member_id=member, unit=unit,  # type: ignore[arg-type]
                        amount=amount, spent_ms=1)


def funded(sessions: sessionmaker[Session], clock: ManualClock, *, pts: int = 100,
           sv: int = 0) -> str:
    member = new_member(sessions, clock)
    with sessions.begin() as s:
        if pts:
            points.credit(s, member, pts, op_id=f"earn:seed-{member}", now_ms=clock.now_ms(),
                          ttl_ms=None)
        if sv:
            stored_value.apply(s, member, sv, kind="load", ref="load-1", now_ms=clock.now_ms())
    return member


def ledger_rows(sessions: sessionmaker[Session], key: str) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(PointsEntry).where(
            PointsEntry.op_id == key)) or 0) + int(s.scalar(select(func.count()).select_from(
                StoredValueEntry).where(StoredValueEntry.ref == key)) or 0)


def test_authorise_spends_once_per_spend_id(sessions: sessionmaker[Session],
                                            clock: ManualClock) -> None:
    metrics = spends.SpendMetrics(registry := CollectorRegistry())
    m = funded(sessions, clock, pts=100)
    with sessions.begin() as s:
        first = spends.authorise(s, store_id="s1", spend=spend(m, 30), now_ms=clock.now_ms(),
                                 metrics=metrics)
    with sessions.begin() as s:
        again = spends.authorise(s, store_id="s1", spend=spend(m, 30), now_ms=clock.now_ms(),
                                 metrics=metrics)
    assert (first.status, first.taken, first.balance, first.replayed) == \
        ("authorised", 30, 70, False)
    assert (again.taken, again.balance, again.replayed) == (30, 70, True)
    with sessions() as s:
        assert points.balance(s, m) == 70
    assert ledger_rows(sessions, spends.ledger_key("s1", "sp-1")) == 1
    # the same id at another store is another spend
    with sessions.begin() as s:
        other = spends.authorise(s, store_id="s2", spend=spend(m, 30), now_ms=clock.now_ms())
    assert (other.replayed, other.balance) == (False, 40)
    # the same id for another amount is a conflict, nothing moves
    with sessions.begin() as s, pytest.raises(Conflict):
        spends.authorise(s, store_id="s1", spend=spend(m, 31), now_ms=clock.now_ms())
    assert registry.get_sample_value("storefleet_member_spends_total",
                                     {"mode": "online", "result": "replayed"}) == 1


def test_authorise_refuses_what_the_balance_cannot_cover(sessions: sessionmaker[Session],
                                                         clock: ManualClock) -> None:
    m = funded(sessions, clock, pts=20, sv=500)
    with sessions.begin() as s, pytest.raises(InsufficientBalance) as err:
        spends.authorise(s, store_id="s1", spend=spend(m, 21), now_ms=clock.now_ms())
    assert (err.value.wanted, err.value.available) == (21, 20)
    with sessions.begin() as s:
        ok = spends.authorise(s, store_id="s1", spend=spend(m, 499, "sv-1", "stored_value"),
                              now_ms=clock.now_ms())
        assert (ok.unit, ok.balance) == ("stored_value", 1)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(MemberSpend)) == 1
        assert stored_value.balance(s, m) == 1


def test_an_authorised_spend_then_its_offline_event_is_applied_once(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """The box's answer was lost: it spent offline with the same id and sent the event."""
    m = funded(sessions, clock, pts=100)
    with sessions.begin() as s:
        spends.authorise(s, store_id="s1", spend=spend(m, 60), now_ms=clock.now_ms())
    with sessions.begin() as s:
        settled = spends.settle(s, store_id="s1", spend=spend(m, 60), now_ms=clock.now_ms())
    assert (settled.replayed, settled.status, settled.balance) == (True, "authorised", 40)


def test_an_offline_spend_the_balance_cannot_cover_is_owed(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    metrics = spends.SpendMetrics(registry := CollectorRegistry())
    m = funded(sessions, clock, pts=30)
    with sessions.begin() as s:
        short = spends.settle(s, store_id="s1", spend=spend(m, 50), now_ms=clock.now_ms(),
                              metrics=metrics)
    assert (short.status, short.taken, short.shortfall, short.balance) == ("short", 30, 20, -20)
    with sessions() as s:
        assert points.balance(s, m) == 0  # the ledger never goes below zero
        assert spends.owed(s, m, "points") == 20
        assert spends.balance(s, m, "points") == -20
    # what is owed is not spent again online
    with sessions.begin() as s:
        points.credit(s, m, 15, op_id="earn:more", now_ms=clock.now_ms(), ttl_ms=None)
    with sessions.begin() as s, pytest.raises(InsufficientBalance):
        spends.authorise(s, store_id="s1", spend=spend(m, 1, "sp-2"), now_ms=clock.now_ms())
    # settled again (a redelivered event): nothing changes
    with sessions.begin() as s:
        again = spends.settle(s, store_id="s1", spend=spend(m, 50), now_ms=clock.now_ms(),
                              metrics=metrics)
    assert (again.replayed, again.shortfall) == (True, 20)
    with sessions() as s:
        assert points.balance(s, m) == 15
    assert registry.get_sample_value("storefleet_member_spends_total",
                                     {"mode": "offline", "result": "short"}) == 1


def test_the_hook_settles_member_spend_events(sessions: sessionmaker[Session],
                                              clock: ManualClock) -> None:
    m = funded(sessions, clock, pts=0, sv=1000)
    hook = spends.SpendHook(spends.SpendMetrics(CollectorRegistry()))
    event = Event(id="e1", kind="member_spend", store_id="s1", seq=1, ts=5, data={
        "spend_id": "sp-9", "member_id": m, "unit": "stored_value", "amount": 250,
        "spent_ms": 4})
    for _ in range(2):  # redelivered
        with sessions.begin() as s:
            hook(s, event, clock.now_ms())
    with sessions() as s:
        assert stored_value.balance(s, m) == 750
        row = s.get(MemberSpend, ("s1", "sp-9"))
        assert row is not None and (row.mode, row.status, row.spent_ms) == \
            ("offline", "settled", 4)
    bad = event.model_copy(update={"data": {"spend_id": "sp-10"}})
    with sessions.begin() as s, pytest.raises(ValueError):
        hook(s, bad, clock.now_ms())


def test_a_released_spend_is_given_back_once_and_not_authorised_again(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """Decision 0068: the sale the spend was authorised for was not recorded."""
    metrics = spends.SpendMetrics(registry := CollectorRegistry())
    m = funded(sessions, clock, pts=100, sv=500)
    with sessions.begin() as s:
        spends.authorise(s, store_id="s1", spend=spend(m, 80), now_ms=clock.now_ms())
        spends.authorise(s, store_id="s1", spend=spend(m, 200, "sv-1", "stored_value"),
                         now_ms=clock.now_ms())
    for _ in range(2):  # a redelivered release gives back once
        with sessions.begin() as s:
            back = spends.release(s, store_id="s1", spend=spend(m, 80), now_ms=clock.now_ms(),
                                  points_ttl_ms=None, metrics=metrics)
            spends.release(s, store_id="s1", spend=spend(m, 200, "sv-1", "stored_value"),
                           now_ms=clock.now_ms(), points_ttl_ms=None)
    assert (back.status, back.replayed) == ("released", True)
    with sessions() as s:
        assert points.balance(s, m) == 100 and stored_value.balance(s, m) == 500
    assert ledger_rows(sessions, "release:s1/sp-1") == 1
    assert ledger_rows(sessions, "release:s1/sv-1") == 1
    assert registry.get_sample_value("storefleet_member_spends_total",
                                     {"mode": "online", "result": "released"}) == 1
    # the same id is not spent again: the box draws a new one
    with sessions.begin() as s, pytest.raises(Conflict):
        spends.authorise(s, store_id="s1", spend=spend(m, 80), now_ms=clock.now_ms())
    # another spend's release is a conflict, not a gift
    with sessions.begin() as s, pytest.raises(Conflict):
        spends.release(s, store_id="s1", spend=spend(m, 99), now_ms=clock.now_ms(),
                       points_ttl_ms=None)
    with sessions() as s:
        assert points.balance(s, m) == 100


def test_a_release_before_its_offline_spend_and_of_what_was_owed(
        sessions: sessionmaker[Session], clock: ManualClock) -> None:
    m = funded(sessions, clock, pts=30)
    hook = spends.SpendHook(spends.SpendMetrics(CollectorRegistry()), points_ttl_ms=None)
    data = {"spend_id": "sp-5", "member_id": m, "unit": "points", "amount": 20,
            "spent_ms": 4}
    spent = Event(id="spend-sp-5", kind="member_spend", store_id="s1", seq=1, ts=5, data=data)
    released = Event(id="release-sp-5", kind="member_spend_release", store_id="s1", seq=2,
                     ts=6, data=data)
    # the release overtakes its spend (two ingest workers): the spend then takes nothing
    for event in (released, spent, released):
        with sessions.begin() as s:
            hook(s, event, clock.now_ms())
    with sessions() as s:
        assert points.balance(s, m) == 30
        row = s.get(MemberSpend, ("s1", "sp-5"))
        assert row is not None and (row.status, row.taken, row.shortfall) == ("released", 0, 0)
    # an offline spend the balance could not cover: released, nothing is owed any more
    with sessions.begin() as s:
        spends.settle(s, store_id="s1", spend=spend(m, 50, "sp-6"), now_ms=clock.now_ms())
    with sessions() as s:
        assert (points.balance(s, m), spends.owed(s, m, "points")) == (0, 20)
    with sessions.begin() as s:
        spends.release(s, store_id="s1", spend=spend(m, 50, "sp-6"), now_ms=clock.now_ms(),
                       points_ttl_ms=None)
    with sessions() as s:
        assert (points.balance(s, m), spends.owed(s, m, "points")) == (30, 0)
