"""The whole device-shadow path on real Mosquitto (decision 0037): the API's desired
state for the ESL access point reaches its driver through the agent, the simulated AP's
labels show the prices, ingest stores the reported shadow and the API's delta empties;
a stale write is a 409; a null deletes the key down to the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from firmware_sim.esl import start_esl_ap_sim
from tests.cloud.conftest import ADMIN, api_client, auth, make_settings
from tests.edge_agent.helpers import make_config, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto,
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

LABELS = ["L1", "L2", "L3"]


def book(version: int, **prices: int) -> dict[str, Any]:
    return {"version": version, "currency": "EUR",
            "items": {sku: {"price_minor": p} for sku, p in prices.items()}}


async def test_api_desired_reaches_the_esl_and_the_shadow_converges(
    mosquitto_factory: object, tmp_path: Path, db_url: str
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    devices = [{"id": "AP1", "family": "esl", "options": {
        "labels": {"L1": "A", "L2": "B", "L3": "C"}, "tick_s": 0.05, "retry_s": 1.0}}]
    config = make_config(tmp_path, uplink=uplink, local=local, devices=devices)
    url = f"/api/v1/stores/{config.store_id}/devices/AP1/shadow"
    app = create_app(make_settings(db_url, uplink.url), registry=CollectorRegistry(),
                     ingest=True)  # the real MQTT publisher and ingest
    admin = auth(ADMIN)
    async with api_client(app) as c, running_agent(config):
        ap = await start_esl_ap_sim(local.url, ap_id="AP1", labels=LABELS,
                                    checkin_interval_s=0.2, tick_s=0.05)
        try:
            async def shadow() -> dict[str, Any]:
                r = await c.get(url, headers=admin)
                return r.json() if r.status_code == 200 else {}

            async def converged(version: int) -> bool:
                s = await shadow()
                return bool(s) and s["reported_version"] == version and s["delta"] == {}

            r = await c.put(url + "/desired", headers=admin, json={
                "state": {"esl_price_book": book(1, A=100, B=200, C=300)},
                "expected_version": 0})
            assert r.status_code == 200, r.text
            await poll(lambda: converged(1), what="shadow v1 converges")
            # Applied by the driver; the labels show it as they check in.
            await wait_until(lambda: {ap.labels[x].shown_price_minor for x in LABELS}
                             == {100, 200, 300}, what="labels show v1")

            # Someone who read version 0 is refused; the store keeps version 1.
            r = await c.put(url + "/desired", headers=admin, json={
                "state": {"esl_price_book": book(7, A=1)}, "expected_version": 0})
            assert r.status_code == 409, r.text

            r = await c.patch(url + "/desired", headers=admin, json={
                "state": {"esl_price_book": {"version": 2, "items": {"B": {"price_minor": 250}}}},
                "expected_version": 1})
            assert r.status_code == 200, r.text
            await poll(lambda: converged(2), what="shadow v2 converges")
            await wait_until(lambda: ap.labels["L2"].shown_price_minor == 250, what="L2 shows 250")

            # null deletes the key: the store no longer reports it as managed.
            r = await c.patch(url + "/desired", headers=admin, json={
                "state": {"esl_price_book": None}, "expected_version": 2})
            assert r.status_code == 200 and r.json()["desired"] == {}
            await poll(lambda: converged(3), what="shadow v3 converges")
            assert (await shadow())["reported"]["applied"] == {}
        finally:
            await ap.aclose()


async def poll(check: Callable[[], Awaitable[bool]], *, what: str,
               within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
