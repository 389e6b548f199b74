"""What the cart driver knows about each cart: session, basket, last scan, flood guard.

Every structure is bounded (carts per store, items per session, pending screen acks),
so a misbehaving or malicious tablet cannot grow the agent's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.drivers.links import TokenBucket
from protocols.cart import CartScan


@dataclass(slots=True)
class Session:
    session_id: str
    member_id: str | None
    started_ms: int
    items: dict[str, int] = field(default_factory=dict)  # barcode -> qty
    item_events: int = 0

    def public(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "member_id": self.member_id,
            "started_ms": self.started_ms,
            "items": dict(self.items),
            "item_count": sum(self.items.values()),
        }


@dataclass(slots=True)
class Cart:
    cart_id: str
    bucket: TokenBucket
    session: Session | None = None
    last_scan: CartScan | None = None
    last_seen_ms: int | None = None
    sessions_total: int = 0
    rate_limited: int = 0
    bad_messages: int = 0

    def public(self) -> dict[str, object]:
        return {
            "cart_id": self.cart_id,
            "last_seen_ms": self.last_seen_ms,
            "session": None if self.session is None else self.session.public(),
            "last_scan": None if self.last_scan is None else self.last_scan.model_dump(),
            "sessions_total": self.sessions_total,
            "rate_limited": self.rate_limited,
            "bad_messages": self.bad_messages,
        }
