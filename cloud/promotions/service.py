"""Promotions: HQ definitions, immutable publications, per-store signed snapshots.

A definition is an engine promotion (``pricing.Promotion``: tiers, weekdays, time
windows and validity live in its ``conditions``) plus the cloud's scope: stores,
regions and channels (pos, cart, online). ``publish`` freezes every live definition,
the tiers' benefits and the active campaigns' coupon rules into the next version,
with regions resolved to store lists *at publish time*, so a version always prices
the same whatever happens to regions later. Versions are never changed or deleted:
re-pricing a sale uses exactly the version it was priced with.

``store_snapshot(publication, store, channel)`` is the engine's ``PromotionSnapshot``
a till in that store and channel prices with; ``store_document`` is the signed
document of all three channels that a store box downloads.

Coupon-trigger rules (``protocols.triggers.TriggerRule``, in-aisle coupons) ride on the
coupon promotion they issue: kept in the definition's JSON under ``TRIGGER_RULES_KEY``
(no column of their own), frozen into the publication entry, and sent to the stores in
the promotion's scope as the signed document's ``trigger_rules`` (a
``TriggerRuleSet`` whose version is the publication's). Once any published promotion
carries rules, every store's document has the key (empty where none apply): HQ then
owns the store's rules, and the store box treats its configured rules as a fallback.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.models_loyalty import PromotionDef, PromotionPublication, StoreRegion
from cloud.loyalty.coupons import active_campaigns, campaign_promotion
from cloud.loyalty.sale import CHANNELS
from cloud.loyalty.tiers import list_tiers, tier_promotions
from cloud.promotions.errors import InvalidDefinition, PromotionError, UnknownPromotion
from cloud.promotions.signing import SnapshotSigner
from pricing import ENGINE_VERSION, InvalidPromotion, Promotion, PromotionSnapshot, check_promotion
from protocols.errors import DecodeError
from protocols.triggers import TriggerRuleSet
from protocols.triggers import parse_rules as parse_trigger_doc

logger = logging.getLogger(__name__)

PROMOTION: TypeAdapter[Promotion] = TypeAdapter(Promotion)
# Ids the cloud generates for tier benefits and campaign coupons.
RESERVED_PREFIXES = ("tier-", "campaign-")
DOCUMENT_KIND = "storefleet.promotions"
# Where a definition keeps its trigger rules: not an engine field, so never priced.
TRIGGER_RULES_KEY = "storefleet.trigger_rules"


def parse_promotion(definition: dict[str, Any]) -> Promotion:
    try:
        promo = PROMOTION.validate_python(definition)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidDefinition(f"{where}: {first['msg']}", field=where) from err
    if promo.id.startswith(RESERVED_PREFIXES) or len(promo.id) > 64:
        raise InvalidDefinition(f"id must be at most 64 chars and not start with "
                                f"{' or '.join(RESERVED_PREFIXES)}", field="id")
    try:
        return check_promotion(promo)  # valid fields that together could never apply
    except InvalidPromotion as err:
        raise InvalidDefinition(f"{err.field}: {err.reason}", field=err.field) from err


def parse_trigger_rules(promo: Promotion, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trigger rules for ``promo``: valid ``TriggerRule``s issuing its coupon code."""
    if not rules:
        return []
    code = getattr(promo, "code", None)
    if code is None:
        raise InvalidDefinition("only a coupon promotion (one with a code) can carry "
                                "trigger rules")
    try:
        parsed = parse_trigger_doc(rules)
    except DecodeError as err:
        raise InvalidDefinition(f"trigger_rules.{err}") from err
    for rule in parsed:
        if rule.coupon.engine_code != code:
            raise InvalidDefinition(f"trigger rule {rule.id} issues "
                                    f"{rule.coupon.engine_code!r}, not this coupon's {code!r}")
    return [r.model_dump(mode="json") for r in parsed]


def engine_definition(row: PromotionDef) -> dict[str, Any]:
    """The definition as the pricing engine takes it (without its trigger rules)."""
    return {k: v for k, v in row.definition.items() if k != TRIGGER_RULES_KEY}


def trigger_rules_of(row: PromotionDef) -> list[dict[str, Any]]:
    return list(row.definition.get(TRIGGER_RULES_KEY, ()))


def upsert_promotion(
    session: Session,
    definition: dict[str, Any],
    *,
    now_ms: int,
    stores: list[str] | None = None,
    regions: list[str] | None = None,
    channels: list[str] | None = None,
    trigger_rules: list[dict[str, Any]] | None = None,
) -> PromotionDef:
    """Create or replace a definition (keyed by the promotion's ``id``), with the
    trigger rules that issue its coupon (replaced whole; None or [] = none)."""
    promo = parse_promotion(definition)
    rules = parse_trigger_rules(promo, trigger_rules or [])
    chans = sorted(set(channels or CHANNELS))
    if not set(chans) <= set(CHANNELS):
        raise InvalidDefinition(f"channels must be among {', '.join(CHANNELS)}")
    row = session.get(PromotionDef, promo.id, with_for_update=True)
    if row is None:
        row = PromotionDef(promotion_id=promo.id, created_ms=now_ms, archived=False)
        session.add(row)
    row.definition = PROMOTION.dump_python(promo, mode="json")
    if rules:
        row.definition = {**row.definition, TRIGGER_RULES_KEY: rules}
    row.stores = sorted(set(stores or ()))
    row.regions = sorted(set(regions or ()))
    row.channels = chans
    row.archived = False
    row.updated_ms = now_ms
    session.flush()
    return row


def archive_promotion(session: Session, promotion_id: str, *, now_ms: int) -> PromotionDef:
    row = session.get(PromotionDef, promotion_id, with_for_update=True)
    if row is None:
        raise UnknownPromotion("promotion", promotion_id)
    row.archived = True
    row.updated_ms = now_ms
    return row


def set_store_region(session: Session, store_id: str, region: str) -> None:
    row = session.get(StoreRegion, store_id)
    if row is None:
        session.add(StoreRegion(store_id=store_id, region=region))
    else:
        row.region = region
    session.flush()


def _resolve_stores(session: Session, row: PromotionDef) -> list[str] | None:
    """None = every store; otherwise the explicit stores plus those of its regions."""
    if not row.stores and not row.regions:
        return None
    in_regions = set(session.scalars(
        select(StoreRegion.store_id).where(StoreRegion.region.in_(row.regions))
    )) if row.regions else set()
    return sorted(set(row.stores) | in_regions)


def publish(session: Session, *, now_ms: int, currency: str) -> PromotionPublication:
    """Freeze the live definitions (and tier / campaign rules) as the next version."""
    entries: list[dict[str, Any]] = []
    base: list[Promotion] = []
    for row in session.scalars(select(PromotionDef).where(~PromotionDef.archived)
                               .order_by(PromotionDef.promotion_id)):
        definition = engine_definition(row)
        promo = PROMOTION.validate_python(definition)
        until = promo.conditions.valid_until_ms
        if until is not None and until <= now_ms:
            continue  # over for good: no till needs it any more
        base.append(promo)
        entry: dict[str, Any] = {"promotion": definition,
                                 "stores": _resolve_stores(session, row),
                                 "channels": list(row.channels)}
        if rules := trigger_rules_of(row):
            entry["trigger_rules"] = rules
        entries.append(entry)
    generated = [*tier_promotions(list_tiers(session), base),
                 *(campaign_promotion(c) for c in active_campaigns(session))]
    for promo in generated:
        entries.append({"promotion": PROMOTION.dump_python(promo, mode="json"),
                        "stores": None, "channels": list(CHANNELS)})
    try:
        # The whole set must be one valid snapshot (unique ids, one currency).
        PromotionSnapshot(version=0, currency=currency,
                          promotions=tuple(PROMOTION.validate_python(e["promotion"])
                                           for e in entries))
    except ValidationError as err:
        raise InvalidDefinition(str(err.errors()[0]["msg"])) from err
    try:  # rule ids are unique across the whole publication
        parse_trigger_doc([r for e in entries for r in e.get("trigger_rules", ())])
    except DecodeError as err:
        raise InvalidDefinition(f"trigger rules: {err}") from err
    last = session.scalar(select(func.max(PromotionPublication.version))) or 0
    publication = PromotionPublication(version=last + 1, currency=currency,
                                       published_ms=now_ms, entries=entries)
    try:
        with session.begin_nested():
            session.add(publication)
    except sa_exc.IntegrityError as err:
        raise PromotionError("another publish took this version; try again") from err
    logger.info("promotions: published version %d (%d promotions)", publication.version,
                len(entries))
    return publication


def latest_version(session: Session) -> int | None:
    """The newest version's number (the primary key's end); None while nothing has been
    published."""
    version = session.scalar(select(func.max(PromotionPublication.version)))
    return None if version is None else int(version)


def latest_publication(session: Session) -> PromotionPublication | None:
    """The newest version; None while nothing has been published (a normal state)."""
    version = latest_version(session)
    return None if version is None else session.get(PromotionPublication, version)


def get_publication(session: Session, version: int | None = None) -> PromotionPublication:
    """``version`` (None: the latest); ``UnknownPromotion`` if there is no such one."""
    if version is None:
        latest = latest_publication(session)
        if latest is None:
            raise UnknownPromotion("publication", "(none published yet)")
        return latest
    publication = session.get(PromotionPublication, version)
    if publication is None:
        raise UnknownPromotion("publication", str(version))
    return publication


def store_snapshot(publication: PromotionPublication, store_id: str,
                   channel: str) -> PromotionSnapshot:
    promos = tuple(
        PROMOTION.validate_python(e["promotion"]) for e in publication.entries
        if channel in e["channels"] and (e["stores"] is None or store_id in e["stores"])
    )
    return PromotionSnapshot(version=publication.version, currency=publication.currency,
                             promotions=promos)


def store_trigger_rules(publication: PromotionPublication,
                        store_id: str) -> TriggerRuleSet | None:
    """The rules of the promotions in this store's scope; None if the publication carries
    no trigger rules at all (the store box then keeps its configured ones)."""
    carried = [e for e in publication.entries if e.get("trigger_rules")]
    if not carried:
        return None
    rules = [r for e in carried if e["stores"] is None or store_id in e["stores"]
             for r in e["trigger_rules"]]
    return TriggerRuleSet(version=publication.version, rules=parse_trigger_doc(rules))


def store_payload(publication: PromotionPublication, store_id: str) -> dict[str, Any]:
    snapshots = {ch: store_snapshot(publication, store_id, ch) for ch in CHANNELS}
    rules = store_trigger_rules(publication, store_id)
    extra = {} if rules is None else {"trigger_rules": rules.model_dump(mode="json")}
    return {**extra,
        "kind": DOCUMENT_KIND,
        "store_id": store_id,
        "version": publication.version,
        "currency": publication.currency,
        "published_ms": publication.published_ms,
        "engine_version": ENGINE_VERSION,
        "snapshots": {ch: s.model_dump(mode="json") for ch, s in snapshots.items()},
        "ruleset_hashes": {ch: s.ruleset_hash() for ch, s in snapshots.items()},
    }


def store_document(publication: PromotionPublication, store_id: str,
                   signer: SnapshotSigner) -> dict[str, Any]:
    return signer.sign(store_payload(publication, store_id))
