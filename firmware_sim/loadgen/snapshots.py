"""Promotion snapshots for the simulated tills, shared across the fleet by ruleset hash.

A store learns of a new snapshot as the real box does: the cloud's retained
``PromotionsAnnouncement`` on its ``content/promotions`` topic names the version, the
path to GET it and the ruleset hash of each channel. Stores whose promotions are the
same share one hash, so the fleet fetches and compiles each distinct snapshot once, not
once per store (5,000 stores, one GET). The signature is not checked: the simulator
trusts the cloud it is pointed at; checking is the agent's job
(``edge_agent/pos/cache.py``), not what a load test measures."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from pricing import PromotionSnapshot, Ruleset, compile
from protocols.messages import PromotionsAnnouncement

logger = logging.getLogger(__name__)

CHANNEL = "pos"  # the simulated tills sell at the POS


@dataclass(frozen=True, slots=True)
class Priced:
    """A snapshot the till prices with, compiled once."""

    snapshot: PromotionSnapshot
    ruleset: Ruleset


class SnapshotSource:
    """Fetches announced snapshots from the cloud's API (device token), once per hash."""

    def __init__(self, api_url: str, *, token: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(base_url=api_url, timeout=timeout_s,
                                       headers={"Authorization": f"Bearer {token}"})
        self._by_hash: dict[str, Priced] = {}
        self._fetching: dict[str, asyncio.Task[Priced | None]] = {}
        self.failures = 0  # fetches that failed (logged; the store asks again next time)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, announcement: PromotionsAnnouncement) -> Priced | None:
        """The announced snapshot of the POS channel; None when it cannot be had."""
        ruleset_hash = announcement.ruleset_hashes.get(CHANNEL)
        if ruleset_hash is not None and ruleset_hash in self._by_hash:
            return self._by_hash[ruleset_hash]
        key = ruleset_hash or announcement.path
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(announcement.path), name=f"snapshot-{key}")
            self._fetching[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._fetching.pop(key, None)

    async def _fetch(self, path: str) -> Priced | None:
        try:
            r = await self._http.get(path)
            r.raise_for_status()
            payload = r.json()["payload"]
            snapshot = PromotionSnapshot.model_validate(payload["snapshots"][CHANNEL])
        except (httpx.HTTPError, KeyError, ValueError) as err:
            self.failures += 1
            logger.warning("promotion snapshot %s not fetched: %s", path, err)
            return None
        # compile is pure CPU (milliseconds for a few hundred promotions): once per hash.
        priced = Priced(snapshot, compile(snapshot))
        self._by_hash[snapshot.ruleset_hash()] = priced
        return priced
