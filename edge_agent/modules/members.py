"""Members at the store (``[members]``, decision 0064): who the shopper is, and their
points and stored-value spends, with the cloud away.

    [members]
    offline_points_cap = 2000         # per member per UTC day spent offline at this box
    offline_stored_value_cap = 5000   # likewise, minor units
    authorise_timeout_s = 2.0         # then the spend is decided offline
    phone_key = "..."                 # the cloud's member_hash_key: phones found offline
    legacy_codes = false              # unsigned "SFM:<id>" (demo sample data only)
    cloud_api = "https://hq/"         # default: [content]'s, with its token

The cloud publishes the store's member snapshot as the ``members`` document of its
signed content manifest (``protocols.member_snapshot``); the content module verifies
the manifest (and again from disk at every start) and hands it here. A document that
is not a valid snapshot for this store is refused (counted, logged); the one taken
before stays.

The interface the lane till and the cart screens call (one ``Members`` per box, from
``kernel.module("members")``)::

    view = await members.lookup(code="SFM2....")      # or phone="+49 ...", member_id=
    member = await members.find(ref)                  # the till's MemberDirectory seam:
                                                      # ref.code / .member_id / .phone
    ok = await members.authorise_spend(view.member_id, unit="points", amount=300)
    ok.spend_id, ok.mode                              # "online" | "offline"
    await members.release_spend(ok.spend_id)          # its sale was not recorded

``lookup`` raises ``MemberRefused`` (``reason``: a code's refusal, ``protocols.
membercode.REASONS``, or ``unknown_member``, ``needs_cloud``); ``authorise_spend`` raises
``SpendRefused`` (``insufficient_balance``, ``offline_cap``, ``unknown_member``,
``conflict``, ``released``, ``refused``). Each is counted
(``storefleet_members_codes_total{result}``, ``storefleet_members_spends_total{mode,
result}``) and logged. A member code is accepted
once per box (``ReplayGuard``): the till looks the member up once per basket.

A spend goes to the cloud first (``POST /api/v1/members/{id}/authorise``, idempotent by
spend id). When the cloud cannot be reached (offline, a timeout, a 5xx) it is decided
here: within the member's balance as the snapshot knows it less this box's spends since,
and within the day's offline cap. Every spend is kept in ``<data_dir>/members/
spends.json`` (written to a temporary file, fsynced, renamed: a restart keeps the caps
and balances), and an offline one goes as a ``member_spend`` event through the outbox
(event id from the spend id; sent again at start, which the outbox and the cloud both
take once). The cloud settles it on arrival, a shortfall recorded as owed.

The same spend id asked again (a till repeating a sale after a lost answer) is the spend
kept: nothing is asked or counted twice; the same id for another amount is ``conflict``.
A spend whose sale could not be recorded is released (decision 0068): marked so in
``spends.json`` first (it counts towards no balance or cap from then on), then sent as a
``member_spend_release`` event through the outbox (again at start), and the cloud gives
back what it took. A released id is never authorised again (``released``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from prometheus_client import Counter
from pydantic import Field, SecretStr, ValidationError

from edge_agent.errors import AgentError
from edge_agent.fsutil import write_atomically
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.metrics import registry_scoped
from edge_agent.modules.content import AppliedContent, Content
from pricing import Member
from protocols import membercode
from protocols.errors import StorefleetError
from protocols.ids import uuid7
from protocols.member_snapshot import (
    DOCUMENT,
    CouponHeld,
    MemberSnapshot,
    SnapshotMember,
    phone_entry,
    phone_hash,
)
from protocols.member_spend import KIND, RELEASE_KIND, MemberSpendData, Unit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor

logger = logging.getLogger(__name__)

SPENDS = "spends.json"
KEEP_MS = 2 * membercode.DAY_MS  # spends older than yesterday count towards nothing


class MembersSettings(ModuleSettings):
    offline_points_cap: int = Field(default=2_000, ge=0)
    offline_stored_value_cap: int = Field(default=5_000, ge=0)  # minor units
    authorise_timeout_s: float = Field(default=2.0, gt=0, le=30)
    phone_key: SecretStr | None = None
    legacy_codes: bool = False
    cloud_api: str | None = None
    cloud_api_token: SecretStr | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class MemberRefused(AgentError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"member refused ({reason}): {detail}")
        self.reason, self.detail = reason, detail


class SpendRefused(AgentError):
    def __init__(self, reason: str, detail: str, *, mode: str) -> None:
        super().__init__(f"spend refused ({reason}, {mode}): {detail}")
        self.reason, self.detail, self.mode = reason, detail, mode


class MembersMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.codes = Counter(
            "storefleet_members_codes", "Member look-ups at the box, by result (accepted, "
            "or why not: expired, replayed, forged, ..., unknown_member, needs_cloud)",
            ["result"], registry=registry)
        self.spends = Counter(
            "storefleet_members_spends", "Points and stored-value spends, by mode (online, "
            "offline) and result (authorised, replayed: the same id again, given_back: its "
            "sale not recorded, or why not)", ["mode", "result"],
            registry=registry)
        self.snapshots = Counter(
            "storefleet_members_snapshots", "Member snapshots from content manifests, by "
            "result (taken, refused, unreadable: spends.json)", ["result"], registry=registry)


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as the box knows them: balances less this box's spends since the
    snapshot (negative: owed); ``source`` snapshot, cloud, or code (a legacy code)."""

    member_id: str
    tier: str | None
    points: int
    stored_value: int
    coupons: tuple[CouponHeld, ...]
    source: str


@dataclass(frozen=True, slots=True)
class LocalSpend:
    spend_id: str
    member_id: str
    unit: Unit
    amount: int
    spent_ms: int
    mode: str  # online | offline
    released: bool = False  # its sale was not recorded: given back (decision 0068)
    purpose: str | None = None  # what it pays for ("sale:<sale id>"): found at start


@dataclass(frozen=True, slots=True)
class SpendAuthorised:
    spend_id: str
    member_id: str
    unit: Unit
    amount: int
    mode: str  # online | offline


class Members(Module):
    name = "members"
    Settings = MembersSettings
    default_on: ClassVar[bool] = False
    after = ("content",)

    def __init__(self, kernel: Kernel, settings: MembersSettings) -> None:
        super().__init__(kernel, settings)
        content = kernel.module("content")
        self.content = content if isinstance(content, Content) else None
        self.metrics = registry_scoped(kernel.registry, "members", MembersMetrics)
        self.root = kernel.data_dir / "members"
        self.snapshot: MemberSnapshot | None = None
        self._phones: dict[str, str] = {}
        self.spends: list[LocalSpend] = []
        self.guard = membercode.ReplayGuard()
        self._write_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        self.transport: httpx.AsyncBaseTransport | None = None  # tests: an in-process cloud

    # ---- lifetime ---------------------------------------------------------------------

    async def open(self) -> None:
        since = self.kernel.clock.now_ms() - KEEP_MS
        self.spends = [s for s in await asyncio.to_thread(self._load) if s.spent_ms > since]

    async def start(self, tasks: Supervisor) -> None:
        base, token = self.settings.cloud_api, self.settings.cloud_api_token
        if base is None and self.content is not None:
            base, token = self.content.settings.cloud_api, self.content.settings.cloud_api_token
        if base is not None:
            headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
            self._http = httpx.AsyncClient(base_url=base, headers=headers,
                                           timeout=self.settings.authorise_timeout_s,
                                           transport=self.transport)
        if self.content is not None:
            self.content.on_applied(self._on_applied)
        for spend in self.spends:  # a crash may have come between the file and the outbox
            if spend.mode == "offline":
                await self._emit(spend)
            if spend.released:
                await self._emit(spend, RELEASE_KIND)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def diagnostics(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"snapshot_version": snap.version if snap else None,
                "members": len(snap.members) if snap else 0,
                "spends_kept": len(self.spends)}

    # ---- the snapshot -----------------------------------------------------------------

    def _on_applied(self, applied: AppliedContent) -> None:
        doc = applied.manifest.documents.get(DOCUMENT)
        if doc is None:
            return  # this manifest carries no members: the snapshot taken stays
        try:
            snapshot = MemberSnapshot.model_validate(doc)
            if snapshot.store_id != self.kernel.store_id:
                raise ValueError(f"snapshot for store {snapshot.store_id}")
        except (ValidationError, ValueError) as err:
            self.metrics.snapshots.labels(result="refused").inc()
            logger.error("members: snapshot of manifest %d refused: %s; the one taken stays",
                         applied.manifest.version, err)
            return
        if self.snapshot is not None and snapshot.created_ms < self.snapshot.created_ms:
            return  # an older manifest's: keep the newer
        self.snapshot = snapshot
        self._phones = {m.phone: mid for mid, m in snapshot.members.items() if m.phone}
        self.metrics.snapshots.labels(result="taken").inc()
        logger.info("members: snapshot %s with %d members (%d omitted)", snapshot.version,
                    len(snapshot.members), snapshot.omitted)

    def _key(self, member_id: str, day: int) -> bytes | None:
        entry = self.snapshot.members.get(member_id) if self.snapshot else None
        text = entry.keys.get(str(day)) if entry else None
        try:
            return membercode.decode_key(text) if text else None
        except ValueError:
            return None  # counted as unknown_member by the caller's refusal

    def _view(self, member_id: str, entry: SnapshotMember) -> MemberView:
        since = self.snapshot.created_ms if self.snapshot else 0
        spent = {"points": 0, "stored_value": 0}
        for s in self.spends:
            if s.member_id == member_id and s.spent_ms >= since and not s.released:
                spent[s.unit] += s.amount
        return MemberView(member_id=member_id, tier=entry.tier,
                          points=entry.points - spent["points"],
                          stored_value=entry.stored_value - spent["stored_value"],
                          coupons=entry.coupons, source="snapshot")

    # ---- the interface for tills, carts and cabinets ----------------------------------

    async def lookup(self, *, code: str | None = None, phone: str | None = None,
                     member_id: str | None = None) -> MemberView:
        """Who the shopper is, from exactly one of a scanned code, a phone, a member id."""
        if sum(x is not None for x in (code, phone, member_id)) != 1:
            raise ValueError("give exactly one of code, phone and member_id")
        try:
            view = await self._lookup(code, phone, member_id)
        except MemberRefused as err:
            self.metrics.codes.labels(result=err.reason).inc()
            logger.warning("store %s: member refused: %s", self.kernel.store_id, err)
            raise
        self.metrics.codes.labels(result="accepted").inc()
        return view

    async def _lookup(self, code: str | None, phone: str | None,
                      member_id: str | None) -> MemberView:
        if code is not None:
            try:
                accepted = membercode.verify(
                    code, keys=self._key, now_ms=self.kernel.clock.now_ms(), guard=self.guard,
                    legacy=self.settings.legacy_codes)
            except membercode.CodeRefused as err:
                raise MemberRefused(err.reason, err.detail) from err
            member_id = accepted.member_id
            if accepted.legacy and not self._in_snapshot(member_id):
                return MemberView(member_id, None, 0, 0, (), source="code")
        elif phone is not None:
            member_id = self._by_phone(phone)
            if member_id is None:
                return await self._from_cloud("POST", "/api/v1/members/lookup",
                                              {"phone": phone})
        assert member_id is not None
        entry = self.snapshot.members.get(member_id) if self.snapshot else None
        if entry is not None:
            return self._view(member_id, entry)
        return await self._from_cloud("GET", f"/api/v1/members/{member_id}", None)

    def _in_snapshot(self, member_id: str) -> bool:
        return self.snapshot is not None and member_id in self.snapshot.members

    def _by_phone(self, phone: str) -> str | None:
        key = self.settings.phone_key
        if key is None or self.snapshot is None:
            return None
        try:
            hashed = phone_hash(key.get_secret_value().encode(), phone)
        except ValueError as err:
            raise MemberRefused("unknown_member", str(err)) from err
        return self._phones.get(phone_entry(self.snapshot.salt, hashed))

    async def _from_cloud(self, method: str, path: str,
                          body: dict[str, Any] | None) -> MemberView:
        if self._http is None or not self.kernel.online():
            raise MemberRefused("needs_cloud", "not in the store's snapshot and the cloud "
                                "is not reachable")
        try:
            r = await self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise MemberRefused("needs_cloud", f"{method} {path}: {err!r}") from err
        if r.status_code == 404:
            raise MemberRefused("unknown_member", "no such member")
        if r.status_code >= 400:
            raise MemberRefused("needs_cloud", f"{method} {path}: {r.status_code}")
        doc = r.json()
        return MemberView(member_id=doc["member_id"], tier=doc.get("tier"),
                          points=int(doc["points_balance"]),
                          stored_value=int(doc["stored_value_balance"]), coupons=(),
                          source="cloud")

    async def find(self, ref: Any) -> Member:
        """The lane till's ``MemberDirectory`` seam (``edge_agent.till.members``): a ref
        with ``code``, ``member_id`` or ``phone``; the engine's member (balances >= 0)."""
        given = {k: getattr(ref, k, None) for k in ("code", "member_id", "phone")}
        view = await self.lookup(**{k: v for k, v in given.items() if v is not None})
        return Member(id=view.member_id, tier=view.tier, currency=self.settings.currency,
                      points_balance=max(0, view.points),
                      stored_value_balance=max(0, view.stored_value))

    async def authorise_spend(self, member_id: str, *, unit: Unit, amount: int,
                              spend_id: str | None = None, purpose: str | None = None
                              ) -> SpendAuthorised:
        """Spend ``amount`` of ``unit`` for the member: by the cloud when it answers,
        else here within the balance and the offline cap. ``spend_id``: a retry's.
        ``purpose``: what it pays for (``sale:<sale id>``), kept with it, so that a
        spend whose sale a crash left unrecorded is found (``unreleased``)."""
        now = self.kernel.clock.now_ms()
        # checked as the cloud will check it (ValueError: a bad unit, amount or id)
        MemberSpendData(spend_id=spend_id or "x", member_id=member_id, unit=unit,
                        amount=amount, spent_ms=now)
        spend = LocalSpend(spend_id=spend_id or uuid7(now), member_id=member_id, unit=unit,
                           amount=amount, spent_ms=now, mode="online", purpose=purpose)
        try:
            done = self._kept(spend)
            if done is not None:  # asked again (a lost answer): the spend already made
                return SpendAuthorised(done.spend_id, member_id, unit, amount, done.mode)
            done = await self._online(spend)
            if done is None:
                done = await self._offline(spend)
        except SpendRefused as err:
            self.metrics.spends.labels(mode=err.mode, result=err.reason).inc()
            logger.warning("store %s: spend %s of member %s refused: %s",
                           self.kernel.store_id, spend.spend_id, member_id, err)
            raise
        self.metrics.spends.labels(mode=done.mode, result="authorised").inc()
        return SpendAuthorised(done.spend_id, member_id, unit, amount, done.mode)

    def _kept(self, spend: LocalSpend) -> LocalSpend | None:
        """The spend kept under this id, if any: the same one, or ``SpendRefused``."""
        kept = next((s for s in self.spends if s.spend_id == spend.spend_id), None)
        if kept is None:
            return None
        if kept.released:
            raise SpendRefused("released", f"spend {spend.spend_id} was released: a new "
                               "spend needs a new id", mode=kept.mode)
        if (kept.member_id, kept.unit, kept.amount) != (spend.member_id, spend.unit,
                                                          spend.amount):
            raise SpendRefused("conflict", f"spend {spend.spend_id} was {kept.amount} "
                               f"{kept.unit} of member {kept.member_id}", mode=kept.mode)
        self.metrics.spends.labels(mode=kept.mode, result="replayed").inc()
        return kept

    def unreleased(self, prefix: str) -> list[LocalSpend]:
        """The spends kept for a purpose starting with ``prefix`` and not released."""
        return [s for s in self.spends
                if not s.released and s.purpose is not None and s.purpose.startswith(prefix)]

    async def release_spend(self, spend_id: str) -> bool:
        """Give back a spend whose sale was not recorded (decision 0068): kept as
        released (it counts towards no balance or cap here), and the cloud gives back
        what it took when the ``member_spend_release`` event arrives. False when no
        spend is kept under the id (nothing to give back); the same release again does
        nothing more."""
        kept = next((s for s in self.spends if s.spend_id == spend_id), None)
        if kept is None:
            logger.warning("members: release of spend %s, which this box does not keep",
                           spend_id)
            return False
        if not kept.released:
            released = LocalSpend(**(asdict(kept) | {"released": True}))
            self.spends = [released if s is kept else s for s in self.spends]
            await self._write()
            self.metrics.spends.labels(mode=kept.mode, result="given_back").inc()
            logger.warning("store %s: spend %s of member %s (%d %s) released: its sale was "
                           "not recorded", self.kernel.store_id, spend_id, kept.member_id,
                           kept.amount, kept.unit)
            await self._emit(released, RELEASE_KIND)
        return True

    async def _online(self, spend: LocalSpend) -> LocalSpend | None:
        """The cloud's answer, or None when it cannot give one now."""
        if self._http is None or not self.kernel.online():
            return None
        body = MemberSpendData(spend_id=spend.spend_id, member_id=spend.member_id,
                               unit=spend.unit, amount=spend.amount, spent_ms=spend.spent_ms)
        try:
            r = await self._http.post(
                f"/api/v1/members/{spend.member_id}/authorise",
                json={"store_id": self.kernel.store_id} | body.model_dump(
                    include={"spend_id", "unit", "amount", "spent_ms"}))
        except httpx.HTTPError as err:  # a timeout included: the cloud may have spent it;
            # the offline event with the same spend id is then taken once
            self.metrics.spends.labels(mode="online", result="unreachable").inc()
            logger.warning("members: authorise %s: %r; deciding offline", spend.spend_id, err)
            return None
        if r.status_code >= 500:
            self.metrics.spends.labels(mode="online", result="unreachable").inc()
            return None
        if r.status_code == 409:
            kind = str(r.json().get("type", "")).rsplit("/", 1)[-1]
            raise SpendRefused("insufficient_balance" if kind == "insufficient_balance"
                               else "conflict", r.text[:200], mode="online")
        if r.status_code >= 400:
            raise SpendRefused("refused", f"{r.status_code} {r.text[:200]}", mode="online")
        await self._keep(spend)
        return spend

    async def _offline(self, spend: LocalSpend) -> LocalSpend:
        spend = LocalSpend(**(asdict(spend) | {"mode": "offline"}))
        entry = self.snapshot.members.get(spend.member_id) if self.snapshot else None
        if entry is None:
            raise SpendRefused("unknown_member", "not in the store's snapshot, the cloud "
                               "not reachable", mode="offline")
        view = self._view(spend.member_id, entry)
        have = view.points if spend.unit == "points" else view.stored_value
        if spend.amount > have:
            raise SpendRefused("insufficient_balance", f"{spend.amount} wanted, {have} left",
                               mode="offline")
        cap = (self.settings.offline_points_cap if spend.unit == "points"
               else self.settings.offline_stored_value_cap)
        today = membercode.day_of(spend.spent_ms)
        used = sum(s.amount for s in self.spends
                   if s.member_id == spend.member_id and s.unit == spend.unit
                   and not s.released
                   and s.mode == "offline" and membercode.day_of(s.spent_ms) == today)
        if used + spend.amount > cap:
            raise SpendRefused("offline_cap", f"{used} {spend.unit} spent offline today, "
                               f"cap {cap}", mode="offline")
        await self._keep(spend)  # checked and kept with no await between: lanes race
        await self._emit(spend)
        return spend

    # ---- keeping spends ---------------------------------------------------------------

    async def _keep(self, spend: LocalSpend) -> None:
        now = self.kernel.clock.now_ms()
        self.spends = [s for s in self.spends if s.spent_ms > now - KEEP_MS] + [spend]
        await self._write()

    async def _write(self) -> None:
        async with self._write_lock:
            data = json.dumps([asdict(s) for s in self.spends]).encode()
            await asyncio.to_thread(self._save, data)  # a file write and fsync: off the loop

    def _save(self, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomically(self.root / SPENDS, data)

    def _load(self) -> list[LocalSpend]:
        try:
            rows = json.loads((self.root / SPENDS).read_text(encoding="utf-8"))
            return [LocalSpend(**row) for row in rows]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as err:  # a disk fault or a hand edit
            self.metrics.snapshots.labels(result="unreadable").inc()
            logger.error("members: %s unreadable, caps start afresh: %s",
                         self.root / SPENDS, err)
            return []

    async def _emit(self, spend: LocalSpend, kind: str = KIND) -> None:
        data = MemberSpendData(spend_id=spend.spend_id, member_id=spend.member_id,
                               unit=spend.unit, amount=spend.amount, spent_ms=spend.spent_ms)
        prefix = "release" if kind == RELEASE_KIND else "spend"
        try:
            await self.kernel.sink.emit_event(kind, device_id="agent",
                                              event_id=f"{prefix}-{spend.spend_id}",
                                              data=data.model_dump(mode="json"))
        except StorefleetError:  # kept in spends.json: sent again at the next start
            self.metrics.spends.labels(mode=spend.mode, result="event_failed").inc()
            logger.exception("members: %s %s not stored in the outbox", kind,
                             spend.spend_id)


MODULE = Members
