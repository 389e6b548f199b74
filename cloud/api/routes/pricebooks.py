"""Price books: HQ publishes item prices for the chain or one store; stores download
(or are pushed) a signed, versioned document of their effective book (decision 0015)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, Strict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api.deps import StateDep
from cloud.api.json_body import JsonRoute
from cloud.api.problems import nothing_published
from cloud.api.routes.retail_common import (
    HqRole,
    RetailDep,
    RetailRead,
    RetailState,
    reads,
    require_store,
    writes,
)
from cloud.api.schemas import BigInt
from cloud.db.models import Store
from cloud.db.models_loyalty import PriceBookVersion, StoreRegion
from cloud.loyalty.errors import NotFound
from cloud.pricebook import service
from cloud.pricebook.wire import WireBook
from pricing import Item
from protocols.ids import Id
from protocols.problems import NOTHING_PUBLISHED

router = APIRouter(tags=["price books"], route_class=JsonRoute)

StoreId = Annotated[Id, Path(description="store id")]


class PriceBookItem(Item):
    # A sku keys the stores' price book (protocols.esl.PriceBook) and their labels: an id.
    sku: Id
    price: Annotated[BigInt, Strict()] = Field(description="minor units")


class PriceBookPublish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: Id | None = Field(
        default=None, description="publish this store's overrides; omitted: the chain's book")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="default: the chain's currency")
    # A department store's book: a million SKUs (decision 0047).
    items: list[PriceBookItem] = Field(min_length=0, max_length=1_000_000, description="sku, "
                              "name, category, price (minor units), earns_points")
    changes: bool = Field(default=False, description="items (upserts) and remove apply on top "
                          "of the scope's latest version instead of replacing it")
    remove: list[Id] = Field(default_factory=list, max_length=1_000_000,
                             description="skus to drop (with changes)")
    effective_ms: BigInt | None = Field(
        default=None, ge=0, description="when stores start charging it; default: on arrival")


class PriceBookPublished(BaseModel):
    version: int
    scope: str = Field(description='"*" for the chain, else the store id')
    items: int
    published_ms: int
    announced: int = Field(description="stores told over MQTT")
    announce_failed: list[str]


class SignedPriceBook(BaseModel):
    payload: dict[str, Any] = Field(description="kind, store_id, version, chain_version, "
                                    "store_version, published_ms, effective_ms (the store "
                                    "charges it from then), catalog (pricing.Catalog)")
    key_id: str
    signature: str = Field(description="base64 Ed25519 over the payload's canonical JSON")


def _stores_reached(s: Session, row: PriceBookVersion) -> list[str]:
    if row.scope != service.CHAIN:
        return [row.scope]
    known = (set(s.scalars(select(Store.store_id))) | set(s.scalars(select(StoreRegion.store_id)))
             | set(s.scalars(select(PriceBookVersion.scope).distinct())))
    known.discard(service.CHAIN)
    return sorted(known)


@router.post("/price-books", status_code=201,
             summary="Publish the next price book version for the chain or one store, and "
                     "push each store reached its signed book (retained MQTT message)",
             responses={404: {"description": "store_id is not a store the cloud knows "
                                             "(connected once, or put in a region)"},
                        409: {"description": "published concurrently, or currencies differ"},
                        422: {"description": "not a valid price book"}})
async def publish(body: PriceBookPublish, state: StateDep, retail: RetailDep,
                  _: HqRole) -> PriceBookPublished:
    currency = body.currency or state.settings.currency
    items: list[Item] = list(body.items)

    def work(s: Session) -> tuple[PriceBookVersion, dict[str, dict[str, Any]]]:
        if body.store_id is not None:
            require_store(s, body.store_id)
        row = service.publish(s, items=items, currency=currency,
                              now_ms=state.clock.now_ms(), store_id=body.store_id,
                              effective_ms=body.effective_ms, changes=body.changes,
                              remove=tuple(body.remove))
        s.flush()
        docs = {store: service.announcement_document(s, store, retail.signer)
                for store in _stores_reached(s, row)}
        return row, docs

    # Database work and signing block: off the event loop.
    row, docs = await asyncio.to_thread(writes, state, work)
    failed = await service.announce(state.publisher, docs, signer=retail.signer)
    return PriceBookPublished(version=row.version, scope=row.scope, items=len(row.items),
                              published_ms=row.published_ms,
                              announced=len(docs) - len(failed), announce_failed=failed)


@router.get("/stores/{store_id}/price-book",
            summary="The store's signed price book (the chain's overlaid with the store's "
                    "own prices), latest or as of a version",
            responses={404: {"description": "nothing as of that version; or, with type "
                             f"{NOTHING_PUBLISHED}, no book published for this store yet "
                             "(a normal state: the store keeps polling)"}})
def store_book(store_id: StoreId, state: StateDep, retail: RetailDep, _: RetailRead,
               version: Annotated[BigInt | None, Query(ge=1)] = None) -> SignedPriceBook:
    def work(s: Session) -> SignedPriceBook:
        if version is None and s.scalar(select(PriceBookVersion.version).where(
                PriceBookVersion.scope.in_([service.CHAIN, store_id])).limit(1)) is None:
            raise nothing_published("price book", store_id)
        return SignedPriceBook(**service.store_document(s, store_id, retail.signer,
                                                        version=version))

    return reads(state, work)


class WireHeader(BaseModel):
    header: SignedPriceBook = Field(description="payload: kind, store_id, version, "
                                    "base_version (null: full), effective_ms, published_ms, "
                                    "currency, format, body_sha256, body_size, items, "
                                    "upserts, removals")
    body_path: str = Field(description="GET it for the zstd body the header vouches for")


def _wire(s: Session, store_id: str, retail: RetailState, version: int | None,
          base: int | None) -> WireBook:
    stmt = select(func.max(PriceBookVersion.version)).where(
        PriceBookVersion.scope.in_([service.CHAIN, store_id]))
    if version is not None:
        stmt = stmt.where(PriceBookVersion.version <= version)
    at = s.scalar(stmt)
    if at is None:
        if version is None:
            raise nothing_published("price book", store_id)
        raise NotFound("price book for store", store_id)
    return retail.price_books.get((store_id, at, base), lambda: service.store_wire(
        s, store_id, retail.signer, version=at, base=base))


@router.get("/stores/{store_id}/price-book/wire",
            summary="The store's book as a signed header and a zstd body: the delta from "
                    "base when base is an older version of this store's book, else the full "
                    "book (decision 0047)",
            responses={404: {"description": "nothing as of that version; or, with type "
                             f"{NOTHING_PUBLISHED}, no book published for this store yet"}})
def store_wire_header(store_id: StoreId, state: StateDep, retail: RetailDep, _: RetailRead,
                      base: Annotated[BigInt | None, Query(ge=1)] = None) -> WireHeader:
    book = reads(state, lambda s: _wire(s, store_id, retail, None, base))
    p = book.payload
    query = f"version={p['version']}" + (f"&base={p['base_version']}"
                                        if p["base_version"] is not None else "")
    return WireHeader(header=SignedPriceBook(**book.header),
                      body_path=f"/api/v1/stores/{store_id}/price-book/wire/body?{query}")


@router.get("/stores/{store_id}/price-book/wire/body",
            summary="The zstd body of the store's book at version (the delta from base)",
            response_class=Response,
            responses={200: {"content": {"application/zstd": {}}},
                       404: {"description": "nothing as of that version"}})
def store_wire_body(store_id: StoreId, state: StateDep, retail: RetailDep, _: RetailRead,
                    version: Annotated[BigInt, Query(ge=1)],
                    base: Annotated[BigInt | None, Query(ge=1)] = None) -> Response:
    # Built again from the frozen versions: zstd at one level is deterministic, so the
    # bytes match the header's sha256 (the box checks it anyway).
    book = reads(state, lambda s: _wire(s, store_id, retail, version, base))
    return Response(book.body, media_type="application/zstd")


@router.get("/price-books/versions/{version}", summary="One published version, as frozen",
            responses={404: {"description": "unknown version"}})
def get_version(version: Annotated[BigInt, Path(ge=1)], state: StateDep,
                _: HqRole) -> dict[str, Any]:
    def work(s: Session) -> dict[str, Any]:
        row = s.get(PriceBookVersion, version)
        if row is None:
            raise NotFound("price book version", str(version))
        return {"version": row.version, "scope": row.scope, "currency": row.currency,
                "published_ms": row.published_ms, "items": row.items}

    return reads(state, work)
