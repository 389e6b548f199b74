"""``PosRuntime``: the till and the order desk as the agent runs them.

Built by the till module (``edge_agent.modules.till``) from its ``[till]`` settings:

    pos = PosRuntime(TillSettings(...), store_id="S001", data_dir=path, clock=clock,
                     registry=registry, sink=kernel.sink, online=kernel.online,
                     peripherals=find_peripherals)
    await pos.open()                    # ledger, cached snapshot/catalog/ranges, resume
    task = asyncio.create_task(pos.sync_forever(), name="agent-pos-sync")
    await pos.service.sell(...); await pos.orders.handle(payload)
    await pos.close()

``sync_forever`` refreshes the signed promotion snapshot, the signed price book and the
coupon ranges over HTTP at start, whenever the uplink comes back, and every
``refresh_interval_s``. ``handle_content`` takes the cloud's retained
``content/pricebook`` (installs the pushed book) and ``content/promotions``
(re-downloads the snapshot) announcements.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from edge_agent.pos.cache import (
    CacheError,
    CacheMetrics,
    CatalogCache,
    CloudApi,
    PromotionCache,
    RangeCache,
    load_keys,
)
from edge_agent.pos.ledger import PosLedger
from edge_agent.pos.offline import OfflineLimits
from edge_agent.pos.orders import OrderDesk
from edge_agent.pos.peripherals import PosPeripherals
from edge_agent.pos.pricebook import PriceBookCache
from edge_agent.pos.pricestore import PriceStore
from edge_agent.pos.sales import EventSink, PosMetrics, PosService
from edge_agent.pos.settings import TillSettings
from protocols.clock import Clock

logger = logging.getLogger(__name__)

_LINK_POLL_S = 1.0  # how soon a returning uplink triggers a refresh


class PosRuntime:
    def __init__(self, settings: TillSettings, *, store_id: str, data_dir: Path, clock: Clock,
                 registry: CollectorRegistry, sink: EventSink, online: Callable[[], bool],
                 peripherals: Callable[[], PosPeripherals | None] = lambda: None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._online = online
        data = data_dir / "pos"
        cache_metrics = CacheMetrics(registry)
        self.ledger = PosLedger(data_dir / "pos.db")
        self.promotions = PromotionCache(data / "promotions.json", store_id=store_id,
                                         keys=load_keys(settings.trusted_keys),
                                         metrics=cache_metrics)
        self.catalog = CatalogCache(data / "catalog.json")
        self.pricebook = PriceBookCache(data / "pricebook.json", store_id=store_id,
                                        keys=self.promotions.keys, catalog=self.catalog,
                                        metrics=cache_metrics, clock=clock,
                                        store=PriceStore(data / "pricebook.db"))
        self.ranges = RangeCache(data / "coupon_ranges.json", store_id=store_id,
                                 metrics=cache_metrics)
        token = settings.cloud_api_token
        self.api = (CloudApi(settings.cloud_api,
                             token=token.get_secret_value() if token else None,
                             transport=transport) if settings.cloud_api else None)
        self.service = PosService(
            store_id=store_id, ledger=self.ledger, promotions=self.promotions,
            catalog=self.catalog, ranges=self.ranges, sink=sink, clock=clock,
            metrics=PosMetrics(registry), online=online, api=self.api,
            peripherals=peripherals,
            limits=OfflineLimits(settings.offline_points_per_day,
                                 settings.offline_stored_value_per_day),
            currency=settings.currency, utc_offset_min=settings.utc_offset_min,
            store_info=settings.store)
        self.orders = OrderDesk(store_id=store_id, ledger=self.ledger, sink=sink,
                                clock=clock, registry=registry, tickets_dir=data / "tickets",
                                peripherals=peripherals)
        self.synced = asyncio.Event()  # set after the first successful refresh (tests wait)

    async def open(self) -> None:
        await self.ledger.open()
        await self.promotions.load()
        await self.catalog.load()
        await self.pricebook.load()  # a signed book newer than the provisioned catalog wins
        await self.ranges.load()

    async def resume(self) -> None:
        """After the outbox is open: re-emit sales a crash left half-written."""
        await self.service.resume()

    async def close(self) -> None:
        if self.api is not None:
            await self.api.aclose()
        await self.ledger.close()

    async def refresh(self) -> bool:
        """Download what the till caches; True when both downloads worked."""
        if self.api is None:
            return False
        if not self.promotions.keys:
            # Trust on first use only when no key was provisioned; logged loudly.
            try:
                doc = await self.api.request("GET", "/api/v1/promotions/keys")
                self.promotions.keys = load_keys([k["public_key"] for k in doc])
                logger.warning("no [till] trusted_keys configured: trusting the cloud's "
                               "current keys %s", sorted(self.promotions.keys))
            except (CacheError, KeyError, TypeError) as err:
                logger.warning("could not fetch snapshot keys: %s", err)
                return False
        self.pricebook.keys = dict(self.promotions.keys)  # one key set signs both
        await self.promotions.refresh(self.api)
        await self.pricebook.refresh(self.api)
        ok_ranges = await self.ranges.refresh(self.api)
        ok = self.promotions.version is not None and ok_ranges
        if ok:
            self.synced.set()
        return ok

    async def handle_content(self, kind: str, payload: bytes) -> None:
        """A retained ``content/{kind}`` message from the cloud."""
        if kind == "pricebook":
            await self.pricebook.handle_announcement(payload, self.api)
        elif kind == "promotions" and self.api is not None:
            await self.promotions.refresh(self.api)
        else:
            logger.info("content %s received (%d bytes); not handled here", kind, len(payload))

    async def sync_forever(self) -> None:
        was_online = False
        next_due = 0.0
        while True:
            online = self._online()
            now = self._clock.monotonic()
            if online and (not was_online or now >= next_due):
                ok = await self.refresh()
                # Failed: try again soon rather than after a whole interval.
                next_due = now + (self.settings.refresh_interval_s if ok else 5.0)
            was_online = online
            await self.pricebook.apply_due()  # a held book whose effective time came
            await asyncio.sleep(_LINK_POLL_S)
