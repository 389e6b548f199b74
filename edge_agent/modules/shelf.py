"""E-shelf labels on the till's prices (``[shelf]``; on by default, decision 0018): the
labels show the one-unit price of the till's verified price book and promotion
snapshot, recomputed on every new book or snapshot and every ``sync_interval_s``.
``enabled = false``: labels take only ``esl_price_book`` commands / desired state.

With the content module running, the store's label counts (current, pending, stale,
summed over its access points) go into its content status every ``report_s`` when they
changed (decision 0050): HQ sees how far a price change has reached the shelf."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from edge_agent.drivers.capabilities import LABEL_COUNTER, LABEL_SINK
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.modules.content import Content
from edge_agent.modules.till import Till
from edge_agent.pos.shelf import LabelTarget, ShelfSync
from protocols.content import LabelCounts

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor
    from pricing import Catalog, PromotionSnapshot


class ShelfSettings(ModuleSettings):
    sync_interval_s: float = Field(default=60.0, gt=0)
    # Label counts into the content status: a change is reported within this long.
    report_s: float = Field(default=2.0, gt=0)


class Shelf(Module):
    name = "shelf"
    Settings = ShelfSettings
    default_on: ClassVar[bool] = True
    after = ("till", "content")

    def __init__(self, kernel: Kernel, settings: ShelfSettings) -> None:
        super().__init__(kernel, settings)
        till = kernel.module("till")
        self.sync: ShelfSync | None = None
        if not isinstance(till, Till):
            return  # no till, no prices to show
        pos = till.pos

        def inputs() -> tuple[Catalog | None, PromotionSnapshot | None]:
            compiled = pos.promotions.ruleset("pos")
            return pos.catalog.catalog, (compiled[0] if compiled else None)

        def labels() -> list[LabelTarget]:
            return kernel.drivers.find(LABEL_SINK)

        self.sync = ShelfSync(inputs=inputs, labels=labels, store=pos.service.store,
                              clock=kernel.clock, registry=kernel.registry,
                              interval_s=settings.sync_interval_s,
                              changes=pos.pricebook.changed_since)

    async def start(self, tasks: Supervisor) -> None:
        if self.sync is not None:
            tasks.start("shelf-sync", self.sync.run)
        content = self.kernel.module("content")
        if isinstance(content, Content):
            tasks.start("shelf-label-counts", lambda: self._report_counts(content))

    def counts(self) -> LabelCounts | None:
        """The store's labels by state, None when it has no label driver."""
        counters = self.kernel.drivers.find(LABEL_COUNTER)
        if not counters:
            return None
        current = pending = stale = 0
        for counter in counters:
            c, p, s = counter.label_counts()
            current, pending, stale = current + c, pending + p, stale + s
        return LabelCounts(current=current, pending=pending, stale=stale)

    async def _report_counts(self, content: Content) -> None:
        while True:
            counts = self.counts()
            if counts is not None:
                content.report_labels(counts)  # unchanged counts: nothing is sent
            await asyncio.sleep(self.settings.report_s)

    def diagnostics(self) -> dict[str, Any]:
        return {"following_till": self.sync is not None}


MODULE = Shelf
