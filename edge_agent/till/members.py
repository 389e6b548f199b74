"""Who the shopper at a lane is: a member reference resolved to the engine's ``Member``,
and the points or stored value they pay with authorised.

    ref = MemberRef(code="SFM2.M0004.2941.Qx...")   # or member_id="M0004", phone="+49 151 .."
    member = await directory.find(ref)              # pricing.Member
    spend = await directory.authorise(member.id, unit="points", amount=300,
                                      spend_id=uuid7(now))   # or None
    await directory.release(spend)    # the sale was not recorded (decision 0068)

``StoreMembers`` (the box runs ``[members]``, decision 0064): the member module's signed
snapshot and codes answer ``find`` offline, and ``authorise`` asks the cloud to take the
spend (``POST /api/v1/members/{id}/authorise``) or decides it here within the offline
cap. The sale then names the spend (``spends``): the cloud does not take the points a
second time when the sale arrives.

``CloudMembers`` (no ``[members]``): asks the cloud (``GET /api/v1/members/{id}``, ``POST
/api/v1/members/lookup`` with the till's device token) for tier and balances while the
store is online. Offline, a member id is taken as given (no tier, balances unknown: the
receipt prints none and the till's offline caps apply) and a phone cannot be resolved
(``MemberNeedsCloud``). It cannot verify member codes, and does not authorise spends
(``authorise`` answers None: the sale's ``points_used`` is taken by the cloud on arrival,
as before).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.pos.cache import CacheError, CloudApi
from edge_agent.pos.peripherals import PosError
from pricing import Member
from protocols.ids import Id, SignedCode

logger = logging.getLogger(__name__)

SALE_PURPOSE = "sale:"  # a spend kept by the members module for the sale "sale:<id>"


class MemberError(PosError):
    """A member reference that cannot be resolved (``reason``: unknown_member,
    needs_cloud, or why a member code was refused: ``protocols.membercode.REASONS``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SpendError(PosError):
    """A points or stored-value spend not authorised (``reason``: insufficient_balance,
    offline_cap, unknown_member, conflict, refused)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Unit = Literal["points", "stored_value"]


class MemberRef(BaseModel):
    """Exactly one of ``code`` (the member's signed code, scanned), ``member_id`` and
    ``phone``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: SignedCode | None = None
    member_id: Id | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32,
                                pattern=r"^\+?[0-9][0-9 ()./-]{1,30}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> MemberRef:
        if sum(x is not None for x in (self.code, self.member_id, self.phone)) != 1:
            raise ValueError("give exactly one of code, member_id and phone")
        return self


class MemberDirectory(Protocol):
    # True: ``authorise`` takes the spends before the sale is recorded (the till's
    # offline caps then do not apply); False: the cloud takes them when the sale arrives
    authorises_spends: bool

    async def find(self, ref: MemberRef) -> Member: ...

    async def authorise(self, member_id: str, *, unit: Unit, amount: int,
                        spend_id: str, sale_id: str | None = None) -> str | None:
        """The spend's id once authorised (the sale names it), None when this directory
        does not authorise spends; ``SpendError`` when refused. ``sale_id``: the sale it
        pays for, kept with the spend (``reconcile``)."""
        ...

    async def release(self, spend_id: str) -> None:
        """Give back a spend whose sale was not recorded (decision 0068)."""
        ...

    async def reconcile(self, recorded: Callable[[str], Awaitable[bool]]) -> int:
        """At start, before the lanes sell: give back every spend kept for a sale that
        ``recorded`` (sale id -> in the ledger?) says was never recorded (a crash came
        between the authorisation and the ledger write). Returns how many."""
        ...


class StoreMembers:
    """The ``members`` module (``edge_agent.modules.members.Members``) as the lanes'
    directory: its refusals become ``MemberError`` / ``SpendError``; the member is in
    the till's currency (the one the till prices in)."""

    authorises_spends = True

    def __init__(self, members: Any, *, currency: str) -> None:
        self._members = members
        self._currency = currency

    async def find(self, ref: MemberRef) -> Member:
        from edge_agent.modules.members import MemberRefused

        try:
            member: Member = await self._members.find(ref)
        except MemberRefused as err:
            raise MemberError(err.reason, err.detail) from err
        return member.model_copy(update={"currency": self._currency})

    async def authorise(self, member_id: str, *, unit: Unit, amount: int,
                        spend_id: str, sale_id: str | None = None) -> str | None:
        from edge_agent.modules.members import SpendRefused

        try:
            done = await self._members.authorise_spend(
                member_id, unit=unit, amount=amount, spend_id=spend_id,
                purpose=None if sale_id is None else f"{SALE_PURPOSE}{sale_id}")
        except SpendRefused as err:
            raise SpendError(err.reason, err.detail) from err
        except ValueError as err:  # an id or amount the members module cannot take
            raise SpendError("invalid", str(err)) from err
        return str(done.spend_id)

    async def release(self, spend_id: str) -> None:
        await self._members.release_spend(spend_id)

    async def reconcile(self, recorded: Callable[[str], Awaitable[bool]]) -> int:
        released = 0
        for spend in self._members.unreleased(SALE_PURPOSE):
            sale_id = spend.purpose[len(SALE_PURPOSE):]
            if not await recorded(sale_id):
                logger.warning("spend %s of member %s (%d %s) paid for sale %s, which was "
                               "never recorded: given back", spend.spend_id, spend.member_id,
                               spend.amount, spend.unit, sale_id)
                await self._members.release_spend(spend.spend_id)
                released += 1
        return released


class CloudMembers:
    authorises_spends = False

    def __init__(self, *, api: CloudApi | None, currency: str,
                 online: Callable[[], bool]) -> None:
        self._api = api
        self._currency = currency
        self._online = online

    async def authorise(self, member_id: str, *, unit: Unit, amount: int,
                        spend_id: str, sale_id: str | None = None) -> str | None:
        return None  # the sale's points_used is taken by the cloud when the sale arrives

    async def release(self, spend_id: str) -> None:
        return None  # authorises nothing, so gives nothing back

    async def reconcile(self, recorded: Callable[[str], Awaitable[bool]]) -> int:
        return 0

    async def find(self, ref: MemberRef) -> Member:
        if ref.code is not None:
            raise MemberError("codes_not_enabled", "member codes are verified by the "
                              "[members] module, which this box does not run")
        reachable = self._api is not None and self._online()
        if not reachable:
            if ref.member_id is None:
                raise MemberError("needs_cloud", "a phone number is looked up in the cloud, "
                                                 "which is not reachable now")
            return Member(id=ref.member_id, currency=self._currency)
        assert self._api is not None
        try:
            if ref.member_id is not None:
                doc = await self._api.request("GET", f"/api/v1/members/{ref.member_id}")
            else:
                doc = await self._api.request("POST", "/api/v1/members/lookup",
                                              json_body={"phone": ref.phone})
        except CacheError as err:
            if err.reason == "http" and " 404 " in err.detail:
                raise MemberError("unknown_member", "no such member") from err
            if ref.member_id is None:
                raise MemberError("needs_cloud", f"phone look-up failed: {err.reason}") from err
            # The id is what the shopper showed; sell as offline would (balances unknown).
            logger.warning("member %s not looked up (%s): sold without balances",
                           ref.member_id, err.reason)
            return Member(id=ref.member_id, currency=self._currency)
        return self._member(doc)

    def _member(self, doc: Any) -> Member:
        try:
            return Member(id=doc["member_id"], tier=doc.get("tier"), currency=self._currency,
                          points_balance=int(doc["points_balance"]),
                          stored_value_balance=int(doc["stored_value_balance"]))
        except (KeyError, TypeError, ValueError, ValidationError) as err:
            raise MemberError("needs_cloud", f"the cloud's member is unreadable: {err}") \
                from err
