"""The members module (decision 0064) against a real cloud app in process (SQLite, the
ASGI transport: real routes, real ledger): member codes checked offline from the signed
snapshot, spends authorised by the cloud when it answers and capped offline when not,
offline spends settled once, caps kept across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from cloud.loyalty.spends import SpendHook, SpendMetrics
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from edge_agent.drivers.testing import FakeContext
from edge_agent.modules.content import AppliedContent
from edge_agent.modules.members import MemberRefused, Members, MembersSettings, SpendRefused
from edge_agent.till.members import StoreMembers
from protocols import membercode, topics
from protocols.clock import ManualClock
from protocols.content import ContentManifest
from protocols.messages import Event
from tests.cloud.api.test_store_members import born
from tests.cloud.conftest import ADMIN, DEVICE, api_client, auth, make_settings

STORE = "S001"
SECRET = "test-member-code-secret-0001"
HASH_KEY = "test-member-hash-key-0001"
PHONE = "+49 170 5550001"


@dataclass
class FakeKernel:
    """What the members module uses of the kernel (``edge_agent.kernel.module.Kernel``)."""

    data_dir: Path
    clock: ManualClock
    sink: FakeContext
    store_id: str = STORE
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    up: bool = True

    def online(self) -> bool:
        return self.up

    def module(self, name: str) -> None:
        return None


@dataclass
class Rig:
    cloud: Any
    http: httpx.AsyncClient
    kernel: FakeKernel
    publisher: MemoryPublisher
    anna: str

    async def box(self, **settings: Any) -> Members:
        values: dict[str, Any] = {"cloud_api": "http://cloud", "cloud_api_token": DEVICE,
                                  "offline_points_cap": 300, "phone_key": HASH_KEY}
        members = Members(self.kernel, MembersSettings(**(values | settings)))  # type: ignore[arg-type]
        members.transport = httpx.ASGITransport(app=self.cloud)
        await members.open()
        await members.start(None)  # type: ignore[arg-type]  # it starts no tasks
        members._on_applied(self.applied())
        return members

    def applied(self) -> AppliedContent:
        signed = json.loads(self.publisher.retained[topics.content_manifest(STORE)].payload)
        manifest = ContentManifest.model_validate(signed["payload"])
        return AppliedContent(manifest=manifest, applied_ms=0, signed=signed,
                              cas=self.kernel.data_dir)

    def code(self, at: int | None = None) -> str:
        at = self.kernel.clock.now_ms() if at is None else at
        key = membercode.day_key(SECRET.encode(), self.anna, day=membercode.day_of(at))
        return membercode.make(key, self.anna, now_ms=at)

    async def balance(self) -> tuple[int, int]:
        doc = (await self.http.get(f"/api/v1/members/{self.anna}", headers=auth(ADMIN))).json()
        return doc["points_balance"], doc["stored_value_balance"]

    def settle(self) -> None:
        """The cloud's ingest hook over every member_spend the box put in its outbox."""
        hook = SpendHook(SpendMetrics(CollectorRegistry()))
        with self.cloud.state.cloud.writer.begin() as session:
            for e in self.kernel.sink.events:
                hook(session, Event(id=e.id, kind=e.kind, store_id=STORE, seq=1, ts=1,
                                    data=e.data), self.kernel.clock.now_ms())


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    born(db_url, STORE)
    clock = ManualClock()
    publisher = MemoryPublisher()
    cloud = create_app(make_settings(db_url, member_hash_key=HASH_KEY,
                                     member_code_secret=SECRET), publisher=publisher,
                       clock=clock)
    async with api_client(cloud) as http:
        r = await http.post("/api/v1/members", headers=auth(ADMIN), json={"phone": PHONE})
        anna = r.json()["member_id"]
        for path, body in ((f"/members/{anna}/points/earn", {"points": 500, "op_id": "seed"}),
                           (f"/members/{anna}/stored-value",
                            {"kind": "load", "amount": 2_000, "ref": "seed"}),
                           ):
            assert (await http.post(f"/api/v1{path}", headers=auth(ADMIN),
                                    json=body)).status_code < 300
        r = await http.put(f"/api/v1/members/{anna}/home-store", headers=auth(ADMIN),
                           json={"store_id": STORE})
        assert r.status_code == 200, r.text
        r = await http.post("/api/v1/member-snapshots/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 201, r.text
        kernel = FakeKernel(data_dir=tmp_path / "box", clock=clock,
                            sink=FakeContext(store_id=STORE, clock=clock))
        yield Rig(cloud, http, kernel, publisher, anna)


def counted(members: Members, name: str, **labels: str) -> float:
    return members.kernel.registry.get_sample_value(name, labels) or 0.0


async def test_member_codes_checked_offline(rig: Rig) -> None:
    members = await rig.box()
    rig.kernel.up = False  # the cloud is away: the snapshot answers
    code = rig.code()
    view = await members.lookup(code=code)
    assert (view.member_id, view.points, view.stored_value, view.source) == \
        (rig.anna, 500, 2_000, "snapshot")
    for text, reason in ((code, "replayed"),
                         (rig.code(rig.kernel.clock.now_ms() - 3 * membercode.STEP_MS),
                          "expired"),
                         (code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB"),
                          "forged"),
                         (f"SFM:{rig.anna}", "legacy_disabled")):
        with pytest.raises(MemberRefused) as err:
            await members.lookup(code=text)
        assert err.value.reason == reason
        assert counted(members, "storefleet_members_codes_total", result=reason) >= 1
    # the phone, offline, through the salted entry (the box holds the phone key)
    assert (await members.lookup(phone="0049 1705550001")).member_id == rig.anna
    with pytest.raises(MemberRefused) as err:
        await members.lookup(phone="+49 170 0000000")
    assert err.value.reason == "needs_cloud"
    # the till's seam: a ref with a code gives the engine's member
    rig.kernel.clock.advance(membercode.STEP_MS / 1000)

    @dataclass
    class Ref:
        code: str | None = None
        member_id: str | None = None
        phone: str | None = None

    member = await members.find(Ref(code=rig.code()))
    assert (member.id, member.points_balance, member.stored_value_balance) == \
        (rig.anna, 500, 2_000)
    legacy = await rig.box(legacy_codes=True)
    assert (await legacy.lookup(code=f"SFM:{rig.anna}")).member_id == rig.anna
    await members.close()
    await legacy.close()


async def test_spends_online_offline_capped_and_settled_once(rig: Rig) -> None:
    members = await rig.box()
    online = await members.authorise_spend(rig.anna, unit="points", amount=100)
    assert online.mode == "online"
    assert await rig.balance() == (400, 2_000)
    rig.kernel.up = False
    first = await members.authorise_spend(rig.anna, unit="points", amount=200)
    assert first.mode == "offline"
    with pytest.raises(SpendRefused) as err:  # 200 + 150 > the 300 cap
        await members.authorise_spend(rig.anna, unit="points", amount=150)
    assert err.value.reason == "offline_cap"
    assert counted(members, "storefleet_members_spends_total", mode="offline",
                   result="offline_cap") == 1
    with pytest.raises(SpendRefused) as err:  # 2,000 held: more is refused whatever the cap
        await members.authorise_spend(rig.anna, unit="stored_value", amount=2_001)
    assert err.value.reason == "insufficient_balance"
    # the snapshot's balance less this box's spends since
    assert (await members.lookup(member_id=rig.anna)).points == 200
    assert [e.kind for e in rig.kernel.sink.events] == ["member_spend"]
    # the cloud settles on reconnect, exactly once however often the event comes
    rig.settle()
    rig.settle()
    assert await rig.balance() == (200, 2_000)
    # a restarted box keeps its caps and sends the offline spend again (taken once)
    await members.close()
    again = await rig.box()
    with pytest.raises(SpendRefused) as err:
        await again.authorise_spend(rig.anna, unit="points", amount=150)
    assert err.value.reason == "offline_cap"
    assert len(rig.kernel.sink.events) == 1
    rig.settle()
    assert await rig.balance() == (200, 2_000)
    # online again: the cloud decides, and refuses what the balance cannot cover
    rig.kernel.up = True
    with pytest.raises(SpendRefused) as err:
        await again.authorise_spend(rig.anna, unit="points", amount=201)
    assert (err.value.reason, err.value.mode) == ("insufficient_balance", "online")
    await again.close()


async def test_an_authorisation_whose_answer_is_lost_is_spent_once(rig: Rig) -> None:
    """The cloud spent it, the box timed out and decided offline with the same id."""
    members = await rig.box()
    spend_id = "lost-answer-1"
    r = await rig.http.post(f"/api/v1/members/{rig.anna}/authorise", headers=auth(DEVICE),
                            json={"store_id": STORE, "spend_id": spend_id, "unit": "points",
                                  "amount": 50, "spent_ms": 1})
    assert r.status_code == 200
    rig.kernel.up = False
    done = await members.authorise_spend(rig.anna, unit="points", amount=50,
                                         spend_id=spend_id)
    assert done.mode == "offline"
    rig.settle()
    assert await rig.balance() == (450, 2_000)
    await members.close()


async def test_a_released_spend_is_given_back_once_and_never_spent_again(rig: Rig) -> None:
    """Decision 0068: a spend whose sale was not recorded goes back to the member, on
    the box at once (balance and offline cap) and in the cloud when its event arrives."""
    members = await rig.box()
    online = await members.authorise_spend(rig.anna, unit="points", amount=100,
                                           spend_id="sale-1-p")
    # asked again (a till repeating itself): the same spend, nothing asked twice
    again = await members.authorise_spend(rig.anna, unit="points", amount=100,
                                          spend_id="sale-1-p")
    assert (again.spend_id, again.mode) == (online.spend_id, "online")
    assert await rig.balance() == (400, 2_000)
    with pytest.raises(SpendRefused) as err:  # the same id for another amount
        await members.authorise_spend(rig.anna, unit="points", amount=90, spend_id="sale-1-p")
    assert err.value.reason == "conflict"
    rig.kernel.up = False
    offline = await members.authorise_spend(rig.anna, unit="points", amount=300,
                                            spend_id="sale-2-p")
    assert offline.mode == "offline"
    assert (await members.lookup(member_id=rig.anna)).points == 100  # 500 - 100 - 300
    assert await members.release_spend("sale-2-p") is True
    assert await members.release_spend("sale-2-p") is True  # again: nothing more
    assert await members.release_spend("never-made") is False
    # back on the box at once: the balance, and the day's offline cap (300) again
    assert (await members.lookup(member_id=rig.anna)).points == 400
    with pytest.raises(SpendRefused) as err:
        await members.authorise_spend(rig.anna, unit="points", amount=300,
                                      spend_id="sale-2-p")
    assert err.value.reason == "released"
    rig.kernel.up = True
    assert await members.release_spend("sale-1-p") is True
    assert [(e.kind, e.id) for e in rig.kernel.sink.events] == [
        ("member_spend", "spend-sale-2-p"), ("member_spend_release", "release-sale-2-p"),
        ("member_spend_release", "release-sale-1-p")]
    assert counted(members, "storefleet_members_spends_total", mode="offline",
                   result="given_back") == 1
    assert counted(members, "storefleet_members_spends_total", mode="offline",
                   result="released") == 1  # the released id asked again, refused
    # the cloud: the online spend given back, the offline one settled then released
    # (or released before it arrives: either way it takes nothing); twice is once
    rig.settle()
    rig.settle()
    assert await rig.balance() == (500, 2_000)
    # the cloud never authorises a released id again either
    r = await rig.http.post(f"/api/v1/members/{rig.anna}/authorise", headers=auth(DEVICE),
                            json={"store_id": STORE, "spend_id": "sale-1-p",
                                  "unit": "points", "amount": 100, "spent_ms": 1})
    assert r.status_code == 409, r.text
    assert await rig.balance() == (500, 2_000)
    # a restarted box keeps the release (and sends its event again: taken once)
    await members.close()
    restarted = await rig.box()
    assert (await restarted.lookup(member_id=rig.anna)).points == 500
    with pytest.raises(SpendRefused) as err:
        await restarted.authorise_spend(rig.anna, unit="points", amount=100,
                                        spend_id="sale-1-p")
    assert err.value.reason == "released"
    await restarted.close()


async def test_a_spend_whose_sale_a_crash_left_unrecorded_is_given_back_at_start(
        rig: Rig) -> None:
    """Decision 0068: the box dies between a spend's authorisation and the sale's ledger
    write. At the next start the lanes' directory finds the spend kept for a sale the
    ledger does not have, and gives it back; a spend whose sale was recorded stays."""
    members = await rig.box()
    lanes = StoreMembers(members, currency="EUR")
    sold = await lanes.authorise(rig.anna, unit="points", amount=100, spend_id="sp-sold",
                                 sale_id="sale-recorded")
    lost = await lanes.authorise(rig.anna, unit="stored_value", amount=300,
                                 spend_id="sp-lost", sale_id="sale-never-recorded")
    assert (sold, lost) == ("sp-sold", "sp-lost")
    assert await rig.balance() == (400, 1_700)
    await members.close()  # the crash: no release was made
    restarted = await rig.box()
    asked: list[str] = []

    async def recorded(sale_id: str) -> bool:  # the till's ledger: one sale recorded
        asked.append(sale_id)
        return sale_id == "sale-recorded"

    directory = StoreMembers(restarted, currency="EUR")
    assert await directory.reconcile(recorded) == 1
    assert sorted(asked) == ["sale-never-recorded", "sale-recorded"]
    assert [(s.spend_id, s.released) for s in restarted.spends] == [
        ("sp-sold", False), ("sp-lost", True)]
    assert await directory.reconcile(recorded) == 0  # nothing more to give back
    assert [(e.kind, e.id) for e in rig.kernel.sink.events] == [
        ("member_spend_release", "release-sp-lost")]
    rig.settle()
    assert await rig.balance() == (400, 2_000)
    await restarted.close()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        MembersSettings(offline_points_cap=-1)
    with pytest.raises(ValueError):
        MembersSettings(bogus=1)  # type: ignore[call-arg]
    assert MembersSettings(phone_key=SecretStr("k" * 20)).legacy_codes is False
