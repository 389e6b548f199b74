"""Which event kinds are business records: a store never drops them (decision 0025).

Money, stock and a customer's order depend on these; the cloud audits sales against
them. Every other kind in ``messages.EVENT_KINDS`` is low-value (device chatter,
alarms, analytics): when a store's outbox is full, those go first and are refused
next, while a business event is always accepted, even beyond the outbox's bound.

A new event kind is added to ``EVENT_KINDS`` first and decided here: the import-time
check below refuses a business kind the protocol does not know.
"""

from __future__ import annotations

from protocols.errors import TopicError
from protocols.messages import EVENT_KINDS
from protocols.topics import parse_uplink

BUSINESS_EVENT_KINDS: frozenset[str] = frozenset(
    {
        "sale",
        "refund",
        "vend",
        "coupon_redeemed",  # a redemption changes what a sale charged
        "order_status",  # a customer's online order moving on (paid, picked, handed over)
        "member_spend",  # a member's points or stored value spent offline (decision 0064)
        "member_spend_release",  # a spend given back: its sale was not recorded (0068)
        "cabinet_pickup",  # an order collected at (or expired in) a cabinet (decision 0066)
    }
)

LOW_VALUE_EVENT_KINDS: frozenset[str] = EVENT_KINDS - BUSINESS_EVENT_KINDS

if not BUSINESS_EVENT_KINDS <= EVENT_KINDS:  # pragma: no cover - a typo is caught at import
    raise RuntimeError(f"unknown business kinds: {sorted(BUSINESS_EVENT_KINDS - EVENT_KINDS)}")


def is_low_value(kind: str) -> bool:
    """True only for a known kind outside the business set: an unknown kind is kept."""
    return kind in LOW_VALUE_EVENT_KINDS


def topic_low_value(topic: str) -> bool:
    """Whether an uplink row on ``topic`` is low-value: only ``evt/{kind}`` of such a kind."""
    try:
        parsed = parse_uplink(topic)
    except TopicError:
        return False  # not ours to judge: kept
    return parsed.channel == "evt" and parsed.kind is not None and is_low_value(parsed.kind)
