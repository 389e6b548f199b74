"""``price()``: the six phases, in order, over canonically sorted lines.

1. markdowns and 2. member tier prices set a new *unit* price per line (rounded per
   unit); for each line the engine tries every markdown alone, every tier rule alone and
   every combinable pair, and keeps the lowest unit price.
3. item promotions, 4. basket thresholds and 5. coupons build one ``Option`` per
   applicable rule on the prices left by the phase before, ``search.choose`` picks the
   best conflict-free set, and each chosen discount is split onto its lines by largest
   remainder (``allocate``), in (priority, id) order.
6. tenders (stored value, then points) and points earned.

A later phase never undoes an earlier one; a rule only touches lines whose earlier
promotions it combines with.
"""

from __future__ import annotations

from collections.abc import Callable

from pricing.allocate import largest_remainder
from pricing.errors import CurrencyMismatch, InvalidBasket, UnknownSku
from pricing.model import Basket, Catalog, Member, Store
from pricing.result import Allocation, Applied, PricedBasket, PricedLine
from pricing.rules.base import (
    COUPON,
    ITEM,
    MARKDOWN,
    PHASE_NAMES,
    THRESHOLD,
    Option,
    OptionRule,
    Rule,
    State,
    compatible,
)
from pricing.rules.markdown import UnitRule
from pricing.rules.tender import earn_points
from pricing.ruleset import Ruleset, compile
from pricing.search import choose
from pricing.snapshot import ENGINE_VERSION, PromotionSnapshot

_ITEM_NAME = PHASE_NAMES[ITEM]


_item_conflict: Callable[[Option, Option], bool] | None = None  # item promotions never share a line
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__: 2x faster


def _stack_conflict(a: Option, b: Option) -> bool:
    ra, rb = a.rule, b.rule  # not compatible(ra, rb), inlined: asked for every option pair
    return (
        ra.group == rb.group
        or not (ra.all_groups or rb.group in ra.combines)
        or not (rb.all_groups or ra.group in rb.combines)
    )


def price(
    basket: Basket,
    catalog: Catalog,
    promotions: Ruleset | PromotionSnapshot,
    member: Member | None,
    now: int,
    store: Store,
) -> PricedBasket:
    """Price ``basket`` at ``now`` (UTC epoch ms) in ``store``. Pure and deterministic.

    Pass a compiled ``Ruleset`` (``compile(snapshot)``, once per snapshot); a snapshot is
    accepted and compiled on the spot, which is correct but slow.
    """
    rs = promotions if isinstance(promotions, Ruleset) else compile(promotions)
    cur = basket.currency
    if catalog.currency != cur:
        raise CurrencyMismatch(expected=cur, found=catalog.currency, where="catalog")
    if rs.currency != cur:
        raise CurrencyMismatch(expected=cur, found=rs.currency, where="promotions")
    if store.currency != cur:
        raise CurrencyMismatch(expected=cur, found=store.currency, where="store")
    if member is not None and member.currency != cur:
        raise CurrencyMismatch(expected=cur, found=member.currency, where="member")

    lines = sorted(basket.lines, key=lambda ln: (ln.sku, ln.line_id))
    n = len(lines)
    st = State(now, store.utc_offset_min, store.id)
    if member is not None:
        st.has_member = True
        st.tier = member.tier
    items = catalog.items
    skus: list[str] = []
    cats: list[str] = []
    qty: list[int] = []
    base: list[int] = []
    earns: list[bool] = []
    ids = set()
    for ln in lines:
        item = items.get(ln.sku)
        if item is None:
            raise UnknownSku(ln.sku, line_id=ln.line_id)
        ids.add(ln.line_id)
        skus.append(ln.sku)
        cats.append(item.category)
        qty.append(ln.qty)
        base.append(item.price if ln.unit_price is None else ln.unit_price)
        earns.append(item.earns_points)
    if len(ids) != n:
        raise InvalidBasket("duplicate line ids")
    st.n = n
    st.skus, st.cats, st.qty, st.base, st.earns = skus, cats, qty, base, earns
    st.expiry = [ln.best_before_ms for ln in lines]
    st.line_ids = [ln.line_id for ln in lines]
    unit = list(base)
    st.unit = unit
    net = [u * q for u, q in zip(base, qty, strict=True)]
    st.net = net
    allocs: list[list[Allocation]] = [[] for _ in range(n)]
    applied: list[list[Rule]] = [[] for _ in range(n)]
    st.allocs, st.applied = allocs, applied
    explain: list[Applied] = []

    # gather: the rules that can touch each line (pre-indexed per sku and category in the
    # ruleset), active now; conditions are checked once per rule and call
    unit_rules: list[list[UnitRule]] = [[]] * n  # the shared empty list is never mutated
    hits: dict[int, list[list[int]]] = {}
    active: dict[int, bool] = {}
    line_rules, cache, nslots = rs.line_rules, rs.line_rules_cache, rs.slots
    for i in range(n):
        cached = cache.get((skus[i], cats[i]))
        unit_c, opt_c = cached if cached is not None else line_rules(skus[i], cats[i])
        if unit_c:
            mine = []
            for urule in unit_c:
                if not urule.always:
                    o = urule.ordinal
                    ok = active.get(o)
                    if ok is None:
                        ok = active[o] = urule.active(st)
                    if not ok:
                        continue
                mine.append(urule)
            unit_rules[i] = mine
        for o, slot, orule in opt_c:
            if not orule.always:
                ok = active.get(o)
                if ok is None:
                    ok = active[o] = orule.active(st)
                if not ok:
                    continue
            h = hits.get(o)
            if h is None:
                h = hits[o] = [[] for _ in range(nslots[o])]
            h[slot].append(i)  # lines come in order and each (rule, slot) once per line
    everyone = list(range(n))
    for wide, slot, excl in rs.everywhere_options:  # basket-wide scopes: once per call
        o = wide.ordinal
        if not wide.always:
            ok = active.get(o)
            if ok is None:
                ok = active[o] = wide.active(st)
            if not ok:
                continue
        h = hits.get(o)
        if h is None:
            h = hits[o] = [[] for _ in range(nslots[o])]
        # a basket-wide scope has no skus or categories, so nothing else fills this slot
        h[slot] = [i for i in everyone if skus[i] not in excl] if excl else everyone

    # phases 1-2: the lowest unit price from markdowns and tier rules, per line
    unit_done: dict[int, list] = {}
    for i in range(n):
        cands = unit_rules[i]
        if cands:
            _unit_phase(st, i, cands, unit_done)
    for o in sorted(unit_done):
        rule, amount, count, line_ids = unit_done[o]
        explain.append(
            Applied(
                rule.id, rule.kind, PHASE_NAMES[rule.phase], amount, 0, count, tuple(line_ids), ""
            )
        )

    # phases 3-5
    if hits:
        rules = rs.rules
        by_phase: dict[int, list[OptionRule]] = {ITEM: [], THRESHOLD: []}
        for o in sorted(hits):
            found = rules[o]
            assert isinstance(found, OptionRule)
            by_phase[found.phase].append(found)
        exact = True
        for phase, conflict in ((ITEM, _item_conflict), (THRESHOLD, _stack_conflict)):
            options = []
            st.ok_cache = {}  # the previous phase changed nets and applied promotions
            for orule in by_phase[phase]:
                opt = orule.option(st, hits[orule.ordinal])
                if opt is not None:
                    options.append(opt)
            if options:
                chosen, proven = choose(options, conflict)
                exact = exact and proven
                _apply(st, chosen, PHASE_NAMES[phase], explain)
    else:
        exact = True

    rejected: tuple[str, ...] = ()
    if basket.coupons:
        st.coupons = frozenset(basket.coupons)
        st.ok_cache = {}
        options = []
        for code in sorted(st.coupons):
            for rule in rs.coupons.get(code, ()):
                if rule.active(st):
                    lines_in = [i for i in range(n) if rule.matches(skus[i], cats[i])]
                    opt = rule.option(st, [lines_in])
                    if opt is not None:
                        options.append(opt)
        chosen_c: list[Option] = []
        if options:
            chosen_c, proven = choose(options, _stack_conflict)
            exact = exact and proven
            _apply(st, chosen_c, PHASE_NAMES[COUPON], explain)
        used_codes = {o.rule.code for o in chosen_c}  # type: ignore[attr-defined]
        rejected = tuple(sorted(st.coupons - used_codes))

    # phase 6: tenders, then points earned
    total = sum(net)
    sv = [0] * n
    pv = [0] * n
    pts = [0] * n
    sv_total = pv_total = pts_used = 0
    earned = [0] * n
    if member is not None:
        if basket.stored_value_to_use:
            for sv_rule in rs.stored_value:
                if sv_rule.active(st):
                    sv_total = sv_rule.amount(
                        total=total,
                        requested=basket.stored_value_to_use,
                        balance=member.stored_value_balance,
                    )
                    if sv_total:
                        sv = largest_remainder(sv_total, net)
                        explain.append(_tender_applied(sv_rule, sv_total, 0, lines, sv))
                    break
        if basket.points_to_redeem:
            for pt_rule in rs.points_tender:
                if pt_rule.active(st):
                    pts_used, pv_total = pt_rule.redeem(
                        total=total,
                        due=total - sv_total,
                        requested=basket.points_to_redeem,
                        balance=member.points_balance,
                    )
                    if pv_total:
                        left = [a - b for a, b in zip(net, sv, strict=True)]
                        pv = largest_remainder(pv_total, left)
                        pts = largest_remainder(pts_used, pv)
                        explain.append(_tender_applied(pt_rule, pv_total, pts_used, lines, pv))
                    break
        earn_rules = [r for r in rs.earn if r.active(st)]
        if earn_rules:
            earn_base = [net[i] - pv[i] if earns[i] else 0 for i in range(n)]
            earned, counted = earn_points(st, earn_rules, earn_base)
            for rule, points, used in counted:
                explain.append(
                    Applied(
                        rule.id,
                        rule.kind,
                        "tender",
                        0,
                        points,
                        1,
                        tuple(lines[i].line_id for i in used),
                        f"{rule.points} per {rule.per_minor}",
                    )
                )

    out = []
    subtotal = 0
    for i in range(n):
        ln = lines[i]
        gross = base[i] * qty[i]
        subtotal += gross
        out.append(
            _new(
                PricedLine,
                (
                    ln.line_id,
                    skus[i],
                    qty[i],
                    base[i],
                    gross,
                    tuple(allocs[i]),
                    net[i],
                    sv[i],
                    pv[i],
                    pts[i],
                    net[i] - sv[i] - pv[i],
                    earned[i],
                ),
            )
        )
    return PricedBasket(
        basket.id,
        cur,
        ENGINE_VERSION,
        rs.version,
        rs.hash,
        catalog.version,
        catalog.ruleset_hash(),
        None if member is None else member.id,
        tuple(out),
        subtotal,
        subtotal - total,
        total,
        sv_total,
        pv_total,
        pts_used,
        total - sv_total - pv_total,
        sum(earned),
        tuple(explain),
        rejected,
        exact,
    )


def _unit_phase(st: State, i: int, cands: list[UnitRule], done: dict[int, list]) -> None:
    """``cands`` come sorted by ordinal (``Ruleset.line_rules``)."""
    start = st.base[i]
    best = start
    pick: tuple[UnitRule | None, UnitRule | None, int] | None = None
    markdowns: list[UnitRule | None] = [None]
    tiers: list[UnitRule] = []
    for r in cands:
        if r.phase == MARKDOWN:
            markdowns.append(r)
        else:
            tiers.append(r)
    for md in markdowns:
        after_md = start if md is None else md.unit_after(start, st, i)
        if md is not None:
            if after_md >= start:
                continue
            if after_md < best:
                best, pick = after_md, (md, None, after_md)
        for tr in tiers:
            if md is not None and not compatible(md, tr):
                continue
            after_tr = tr.unit_after(after_md, st, i)
            if after_tr < best:
                best, pick = after_tr, (md, tr, after_md)
    if pick is None:
        return
    md_pick, tr_pick, after_md = pick
    q = st.qty[i]
    st.unit[i] = best
    st.net[i] = best * q
    for rule, amount in ((md_pick, (start - after_md) * q), (tr_pick, (after_md - best) * q)):
        if rule is None:
            continue
        st.allocs[i].append(_new(Allocation, (rule.id, PHASE_NAMES[rule.phase], amount)))
        st.applied[i].append(rule)
        seen = done.get(rule.ordinal)
        if seen is None:
            done[rule.ordinal] = [rule, amount, q, [st.line_ids[i]]]
        else:
            seen[1] += amount
            seen[2] += q
            seen[3].append(st.line_ids[i])


def _apply(st: State, chosen: list[Option], phase: str, explain: list[Applied]) -> None:
    net, allocs, applied = st.net, st.allocs, st.applied
    for opt in chosen:
        value, lines = opt.value, opt.lines
        shares = largest_remainder(value, opt.weights)
        for i, share in zip(lines, shares, strict=True):
            if share > net[i]:  # stacked in one phase and the first took more: re-split
                room = [net[i] for i in lines]
                value = min(value, sum(room))
                shares = largest_remainder(value, room)
                break
        rule = opt.rule
        rule_id = rule.id
        for i, share in zip(lines, shares, strict=True):
            if share:
                net[i] -= share
                allocs[i].append(_new(Allocation, (rule_id, phase, share)))
                applied[i].append(rule)
        line_ids = st.line_ids
        explain.append(
            Applied(
                rule.id,
                rule.kind,
                phase,
                value,
                0,
                opt.times,
                tuple([line_ids[i] for i in lines]),  # a list first: no generator frame
                opt.detail,
            )
        )


def _tender_applied(
    rule: Rule, amount: int, points: int, lines: list, shares: list[int]
) -> Applied:
    used = tuple(lines[i].line_id for i, s in enumerate(shares) if s)
    return Applied(rule.id, rule.kind, "tender", amount, points, 1, used, "")
