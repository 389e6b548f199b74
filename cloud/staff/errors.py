"""Errors of cloud.staff (routes map them to problem+json once, in ``problem_of``).

    StaffError                   base (a CloudError)
     +-- NotAssistant            a store-assistant token names no active assistant of
     |                           its store (``assistant_id``, ``why``: unknown | retired)
     +-- JoinCodeRefused         a join code not accepted (``reason``: malformed |
     |                           forged | expired | unknown_assistant | retired)
     +-- NotLapsed               a one-tap coupon for a member who bought recently
     |                           (``member_id``, ``last_ms``)
     +-- NoCampaign              the one-tap coupon's campaign does not exist yet
                                 (``campaign_id``): HQ creates it

Loyalty's own errors (``cloud.loyalty.errors``: NotFound, Conflict, NotConfigured)
pass through unchanged.
"""

from __future__ import annotations

from cloud.errors import CloudError


class StaffError(CloudError):
    """Base error of cloud.staff."""


class NotAssistant(StaffError):
    def __init__(self, assistant_id: str, why: str) -> None:
        super().__init__(f"assistant {assistant_id!r} is {why} at this token's store")
        self.assistant_id = assistant_id
        self.why = why


class JoinCodeRefused(StaffError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"join code refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class NotLapsed(StaffError):
    def __init__(self, member_id: str, *, last_ms: int, since_ms: int) -> None:
        super().__init__(f"member {member_id} was last active at {last_ms}, after "
                         f"{since_ms}: not lapsed")
        self.member_id = member_id
        self.last_ms = last_ms
        self.since_ms = since_ms


class NoCampaign(StaffError):
    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"the win-back campaign {campaign_id!r} does not exist; HQ "
                         "creates it with POST /api/v1/campaigns")
        self.campaign_id = campaign_id
