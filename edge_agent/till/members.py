"""Who the shopper at a lane is: a member reference resolved to the engine's ``Member``.

    ref = MemberRef(member_id="M0004")        # or MemberRef(phone="+49 151 2345678")
    member = await directory.find(ref)        # pricing.Member

``CloudMembers`` asks the cloud (``GET /api/v1/members/{id}``, ``POST
/api/v1/members/lookup`` with the till's device token) for tier and balances while the
store is online. Offline, or without a cloud API, a member id is taken as given (no
tier, balances unknown: the receipt prints none and the offline caps apply) and a phone
cannot be resolved (``MemberNeedsCloud``).

The seam for the next slices of issue 17: the signed member snapshot answers ``find``
offline (a second ``MemberDirectory`` tried before the cloud), and the signed, rotating
member code becomes a third field of ``MemberRef`` verified here; the lanes' API and the
cashier screen pass a ``MemberRef`` through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.pos.cache import CacheError, CloudApi
from edge_agent.pos.peripherals import PosError
from pricing import Member
from protocols.ids import Id

logger = logging.getLogger(__name__)


class MemberError(PosError):
    """A member reference that cannot be resolved (``reason``: unknown_member,
    needs_cloud)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MemberRef(BaseModel):
    """Exactly one of ``member_id`` and ``phone``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: Id | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32,
                                pattern=r"^\+?[0-9][0-9 ()./-]{1,30}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> MemberRef:
        if (self.member_id is None) == (self.phone is None):
            raise ValueError("give exactly one of member_id and phone")
        return self


class MemberDirectory(Protocol):
    async def find(self, ref: MemberRef) -> Member: ...


class CloudMembers:
    def __init__(self, *, api: CloudApi | None, currency: str,
                 online: Callable[[], bool]) -> None:
        self._api = api
        self._currency = currency
        self._online = online

    async def find(self, ref: MemberRef) -> Member:
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
