"""The coupon-trigger rules engine: pure, synchronous, no I/O, no clock reads.

Feed it observations (a cart is at (zone, shelf) at time t; a category was seen in a
cart) and it answers with the rules that fire now. It keeps only what it needs to
judge: per cart, since when it has been in its zone and at its shelf, which categories
its camera saw when; per rule, issue counts for caps and the last issue per cart for
cool-downs.

Cost: rules are indexed by zone and by shelf at ``load``, so an observation looks only
at the rules of the cart's zone and shelf - O(rules there), not O(all rules). The
``indexed=False`` mode scans every rule and exists as the benchmark's baseline.

A decision counts against caps when it is made (so two scans 200 ms apart cannot both
issue); the caller ``release``s it if issuing failed. Idempotency: every decision
carries ``issue_id`` = f(rule, member or cart session, store-local day, ordinal), so
the same situation always names the same coupon.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocols.triggers import DAY_MS, TriggerRule

MIN_MS = 60_000


@dataclass(frozen=True, slots=True)
class Shopper:
    """Who pushes the cart: an anonymous session or a member (with tier and segments)."""

    session_id: str | None = None
    member_id: str | None = None
    tier: str | None = None
    segments: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    rule: TriggerRule
    cart_id: str
    shopper: Shopper
    zone: str | None
    shelf: str | None
    day: int
    ordinal: int
    ts_ms: int
    issue_id: str

    @property
    def who(self) -> str:
        return who_of(self.shopper, self.cart_id)


@dataclass(slots=True)
class _CartState:
    zone: str | None = None
    zone_since: int = 0
    shelf: str | None = None
    shelf_since: int = 0
    shopper: Shopper = field(default_factory=Shopper)
    seen: dict[str, int] = field(default_factory=dict)  # category -> last seen ms


def who_of(shopper: Shopper, cart_id: str) -> str:
    """Caps count per member; an anonymous shopper is their cart session (or the cart)."""
    if shopper.member_id:
        return f"m:{shopper.member_id}"
    return f"s:{shopper.session_id}" if shopper.session_id else f"c:{cart_id}"


def issue_id_of(rule_id: str, who: str, day: int, ordinal: int) -> str:
    # A hash keeps the id inside the 64-char Ident limit whatever the rule/member ids
    # are; 24 hex chars (96 bits) make a collision between distinct keys negligible.
    digest = hashlib.sha256(f"{rule_id}|{who}|{day}|{ordinal}".encode()).hexdigest()[:24]
    return f"cpn-{digest}"


class TriggerEngine:
    def __init__(self, rules: Iterable[TriggerRule] = (), *, utc_offset_min: int = 0,
                 indexed: bool = True, max_carts: int = 2_000) -> None:
        self.utc_offset_min = utc_offset_min
        self.indexed = indexed
        self.max_carts = max_carts  # bounds the per-cart table (carts come and go)
        self._carts: dict[str, _CartState] = {}
        self._member_counts: dict[tuple[str, str, int], int] = {}  # (rule, who, day) -> n
        self._store_counts: dict[tuple[str, int], int] = {}  # (rule, day) -> n
        self._last_issue: dict[tuple[str, str], int] = {}  # (rule, cart) -> ms
        self.load(rules)

    # ---- rules ---------------------------------------------------------------------------

    def load(self, rules: Iterable[TriggerRule]) -> None:
        """Replace the rule set (counters and cart state stay: caps hold across updates)."""
        ordered = sorted(rules, key=lambda r: (r.priority, r.id))
        self.rules: tuple[TriggerRule, ...] = tuple(ordered)
        by_zone: dict[str, list[TriggerRule]] = {}
        by_shelf: dict[str, list[TriggerRule]] = {}
        for rule in ordered:
            if rule.zone is not None:
                by_zone.setdefault(rule.zone, []).append(rule)
            if rule.shelf is not None:
                by_shelf.setdefault(rule.shelf, []).append(rule)
        self._by_zone = {k: tuple(v) for k, v in by_zone.items()}
        self._by_shelf = {k: tuple(v) for k, v in by_shelf.items()}
        self._by_id = {r.id: r for r in ordered}

    def rule(self, rule_id: str) -> TriggerRule | None:
        return self._by_id.get(rule_id)

    # ---- observations --------------------------------------------------------------------

    def observe_position(self, cart_id: str, *, zone: str | None, shelf: str | None,
                         ts_ms: int, shopper: Shopper | None = None) -> list[Decision]:
        state = self._state(cart_id)
        if state is None:
            return []
        if shopper is not None:
            if shopper.session_id != state.shopper.session_id:
                state.seen.clear()  # a new shopper: the last one's basket is not theirs
            state.shopper = shopper
        if zone != state.zone:
            state.zone, state.zone_since = zone, ts_ms
        if shelf != state.shelf:
            state.shelf, state.shelf_since = shelf, ts_ms
        return self._evaluate(cart_id, state, ts_ms)

    def observe_category(self, cart_id: str, *, category: str, ts_ms: int) -> list[Decision]:
        """The cart's camera saw ``category``: remember it and re-judge where the cart is."""
        state = self._state(cart_id)
        if state is None:
            return []
        state.seen[category] = max(ts_ms, state.seen.get(category, 0))
        return self._evaluate(cart_id, state, ts_ms)

    def forget(self, cart_id: str) -> None:
        """The cart's session ended: drop its position and camera memory."""
        self._carts.pop(cart_id, None)

    def _state(self, cart_id: str) -> _CartState | None:
        state = self._carts.get(cart_id)
        if state is None:
            if len(self._carts) >= self.max_carts:
                return None
            state = self._carts[cart_id] = _CartState()
        return state

    # ---- judging ----------------------------------------------------------------------------

    def candidates(self, zone: str | None, shelf: str | None) -> Iterable[TriggerRule]:
        if not self.indexed:  # the baseline: every rule, every time
            return [r for r in self.rules
                    if (r.zone is not None and r.zone == zone)
                    or (r.shelf is not None and r.shelf == shelf)]
        z = self._by_zone.get(zone, ()) if zone is not None else ()
        s = self._by_shelf.get(shelf, ()) if shelf is not None else ()
        if not s:
            return z
        if not z:
            return s
        return sorted((*z, *s), key=lambda r: (r.priority, r.id))

    def _evaluate(self, cart_id: str, state: _CartState, ts_ms: int) -> list[Decision]:
        out: list[Decision] = []
        for rule in self.candidates(state.zone, state.shelf):
            decision = self._judge(rule, cart_id, state, ts_ms)
            if decision is not None:
                self._count(decision, +1)
                out.append(decision)
        return out

    def _judge(self, rule: TriggerRule, cart_id: str, state: _CartState,
               ts_ms: int) -> Decision | None:
        since = state.zone_since if rule.zone is not None else state.shelf_since
        if ts_ms - since < rule.dwell_ms:
            return None
        if not self._in_window(rule, ts_ms):
            return None
        shopper = state.shopper
        if rule.members_only and not shopper.member_id:
            return None
        if rule.tiers and shopper.tier not in rule.tiers:
            return None
        if rule.segments and not shopper.segments.intersection(rule.segments):
            return None
        if rule.vision_category is not None:
            seen = state.seen.get(rule.vision_category)
            if seen is None or ts_ms - seen > rule.vision_within_ms:
                return None
        last = self._last_issue.get((rule.id, cart_id))
        if last is not None and ts_ms - last < rule.cooldown_ms:
            return None
        day = self.day_of(ts_ms)
        who = who_of(shopper, cart_id)
        issued = self._member_counts.get((rule.id, who, day), 0)
        if issued >= rule.per_member_per_day:
            return None
        if (rule.per_store_per_day is not None
                and self._store_counts.get((rule.id, day), 0) >= rule.per_store_per_day):
            return None
        return Decision(rule=rule, cart_id=cart_id, shopper=shopper, zone=state.zone,
                        shelf=state.shelf, day=day, ordinal=issued, ts_ms=ts_ms,
                        issue_id=issue_id_of(rule.id, who, day, issued))

    def _in_window(self, rule: TriggerRule, ts_ms: int) -> bool:
        if rule.valid_from_ms is not None and ts_ms < rule.valid_from_ms:
            return False
        if rule.valid_until_ms is not None and ts_ms >= rule.valid_until_ms:
            return False
        local = ts_ms + self.utc_offset_min * MIN_MS
        if rule.weekdays:
            # 1970-01-01 was a Thursday (ISO weekday 4)
            weekday = (local // DAY_MS + 3) % 7 + 1
            if weekday not in rule.weekdays:
                return False
        if rule.time_from_min is not None and rule.time_until_min is not None:
            minute = (local % DAY_MS) // MIN_MS
            a, b = rule.time_from_min, rule.time_until_min
            inside = a <= minute < b if a <= b else (minute >= a or minute < b)  # wraps midnight
            if not inside:
                return False
        return True

    def day_of(self, ts_ms: int) -> int:
        """Store-local day number (caps reset at local midnight)."""
        return (ts_ms + self.utc_offset_min * MIN_MS) // DAY_MS

    # ---- counters ---------------------------------------------------------------------------

    def _count(self, d: Decision, delta: int) -> None:
        key = (d.rule.id, d.who, d.day)
        self._member_counts[key] = max(0, self._member_counts.get(key, 0) + delta)
        skey = (d.rule.id, d.day)
        self._store_counts[skey] = max(0, self._store_counts.get(skey, 0) + delta)
        if delta > 0:
            self._last_issue[(d.rule.id, d.cart_id)] = d.ts_ms
        elif self._last_issue.get((d.rule.id, d.cart_id)) == d.ts_ms:
            del self._last_issue[(d.rule.id, d.cart_id)]

    def release(self, decision: Decision) -> None:
        """Issuing failed: give the decision's place under the caps back."""
        self._count(decision, -1)

    def restore(self, *, rule_id: str, who: str, day: int, cart_id: str, ts_ms: int) -> None:
        """Count an issue made before a restart (from the coupon ledger)."""
        key = (rule_id, who, day)
        self._member_counts[key] = self._member_counts.get(key, 0) + 1
        self._store_counts[(rule_id, day)] = self._store_counts.get((rule_id, day), 0) + 1
        prev = self._last_issue.get((rule_id, cart_id), 0)
        self._last_issue[(rule_id, cart_id)] = max(prev, ts_ms)

    def prune(self, *, today: int) -> None:
        """Forget counters of past days (run now and then; keeps memory flat)."""
        self._member_counts = {k: v for k, v in self._member_counts.items() if k[2] >= today}
        self._store_counts = {k: v for k, v in self._store_counts.items() if k[1] >= today}
        # cool-downs are at most a day long
        self._last_issue = {k: v for k, v in self._last_issue.items()
                            if self.day_of(v) >= today - 1}
