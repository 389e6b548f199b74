"""Shared pieces of the loyalty and promotions routes: state, roles, error mapping.

``RetailState`` is built by ``cloud.main.create_app`` and hung on ``app.state.retail``.
Domain errors from ``cloud.loyalty`` / ``cloud.promotions`` are mapped to problem+json
here, once (``problem_of``), and the ``writes`` helper runs a service call in a writer
transaction with that mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import StateDep, require_role
from cloud.api.problems import ApiProblem
from cloud.db.models import Store
from cloud.db.models_loyalty import StoreRegion
from cloud.loyalty import errors as le
from cloud.loyalty.metrics import LoyaltyMetrics
from cloud.loyalty.program import LoyaltyProgram
from cloud.pricebook.wire import WireCache
from cloud.promotions import errors as pe
from cloud.promotions.documents import StoreDocuments
from cloud.promotions.metrics import PromotionMetrics
from cloud.promotions.reprice import Repricer
from cloud.promotions.signing import SnapshotSigner
from cloud.settings import Role
from protocols.ids import Id

T = TypeVar("T")


@dataclass
class RetailState:
    program: LoyaltyProgram
    signer: SnapshotSigner
    loyalty_metrics: LoyaltyMetrics
    promotion_metrics: PromotionMetrics
    repricer: Repricer = field(default_factory=Repricer)
    price_books: WireCache = field(default_factory=WireCache)  # decision 0047
    documents: StoreDocuments = field(default_factory=StoreDocuments)  # decision 0060


def get_retail(request: Request) -> RetailState:
    retail: RetailState = request.app.state.retail
    return retail


RetailDep = Annotated[RetailState, Depends(get_retail)]

MemberId = Annotated[Id, Path(description="member id")]

_READ = frozenset({Role.HQ_ADMIN, Role.FIELD_TECH, Role.STORE_MANAGER, Role.DEVICE})
_TILL = frozenset({Role.HQ_ADMIN, Role.DEVICE})
_ADMIN = frozenset({Role.HQ_ADMIN})


RetailRead = Annotated[Role, Depends(require_role(_READ, "read loyalty data"))]
TillRole = Annotated[Role, Depends(require_role(_TILL, "act for a till"))]
HqRole = Annotated[Role, Depends(require_role(_ADMIN, "manage loyalty and promotions"))]


def require_store(session: Session, store_id: str) -> None:
    """``NotFound`` (a 404) unless the cloud knows ``store_id``: its box has connected (a
    ``stores`` row) or HQ put it in a region (``PUT /regions/{region}/stores/{store_id}``,
    how a store is registered before its box first connects). Content addressed to any
    other id would be stored and published to a topic no store reads."""
    if session.get(Store, store_id) is None and session.scalar(
            select(StoreRegion.store_id).where(StoreRegion.store_id == store_id)) is None:
        raise le.NotFound("store", store_id)


def problem_of(err: Exception) -> ApiProblem:
    match err:
        case le.NotFound() | pe.UnknownPromotion():
            return ApiProblem(404, str(err))
        case le.CouponUnusable(reason="expired"):
            return ApiProblem(410, str(err), reason="coupon_expired")
        case le.CouponUnusable():
            return ApiProblem(409, str(err), reason=f"coupon_{err.reason}")
        case le.InsufficientBalance():
            return ApiProblem(409, str(err), reason="insufficient_balance")
        case le.Conflict():
            return ApiProblem(409, str(err))
        case le.NotConfigured():
            return ApiProblem(503, str(err), reason="not_configured")
        case pe.InvalidDefinition():
            return ApiProblem(422, str(err), reason="invalid_promotion")
        case pe.PromotionError():
            return ApiProblem(409, str(err))
        case ValueError():
            return ApiProblem(422, str(err), reason="invalid")
    raise err


def writes(state: StateDep, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one writer transaction; domain errors become problems."""
    try:
        with state.writer.begin() as session:
            return work(session)
    except (le.LoyaltyError, pe.PromotionError, ValueError) as err:
        raise problem_of(err) from err


def reads(state: StateDep, work: Callable[[Session], T]) -> T:
    try:
        with state.reader() as session:
            return work(session)
    except (le.LoyaltyError, pe.PromotionError, ValueError) as err:
        raise problem_of(err) from err
