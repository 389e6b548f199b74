"""HQ changes a price and an announcement through the API and sees, per store, when each
store took it (issue 15, decision 0050), on real parts: the cloud under uvicorn with
ingest, Mosquitto, two agents with the till, content and audio modules, each with a
simulated audio unit and an e-shelf-label access point on its own local bus.

- A price book published at HQ reaches both tills; the status API shows the
  ``pricebook`` part converged with the time each till took it, and the store's shelf
  labels counted current once they show the new prices.
- An audio schedule saved and published goes out in each store's signed manifest; each
  box hands the recording and the schedule to its unit, which plays it (the unit holds
  the WAV, sent over the bus, and its music segment is that recording); the ``schedule``
  part converges. A changed announcement is a new schedule version: published again, it
  converges again, later; the manifest's other documents are carried over.
- ``fleet content status`` shows the same per part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cloud.promotions.signing import SnapshotSigner
from edge_agent.app import Agent
from firmware_sim.audio.unit import AudioUnitSim, start_audio_unit_sim
from firmware_sim.esl.ap import start_esl_ap_sim
from tests.cloud.conftest import ADMIN, auth
from tests.edge_agent.drivers.audio.fixtures import asset, sha
from tests.fleet.test_fleet_artifacts import fleet as fleet_cli
from tests.integration.rollout_fleet import Fleet, fleet, until_true
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]

LABELS = {"L1": "apple", "L2": "pear", "L3": "plum"}
DEVICES = [
    {"id": "U1", "family": "audio", "options": {"tick_s": 0.1}},
    {"id": "AP1", "family": "esl", "options": {"labels": LABELS, "tick_s": 0.05,
                                               "retry_s": 1.0}},
]


def spec(announce_at: str, music: str = "near") -> dict[str, Any]:
    """Music all day round (so the test hears it whenever it runs) and one announcement."""
    return {
        "duck_db": -12.0,
        "tracks": {t: {"sha256": sha(t), "duration_ms": ms}
                   for t, ms in ((music, 15_000), ("open", 30_000))},
        "zones": {"floor": {"volume_db": -6.0}},
        "dayparts": [{"name": "all", "start": "00:00", "end": "24:00", "playlist": [music]}],
        "announcements": [{"name": "opening", "at": announce_at, "track_id": "open"}],
    }


async def status(f: Fleet) -> dict[str, dict[str, Any]]:
    r = await f.http.get("/api/v1/content/status", headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    return {row["store_id"]: row for row in r.json()}


async def part_converged(f: Fleet, part: str, version: str) -> dict[str, dict[str, Any]]:
    """Wait until every store runs ``version`` of ``part``; their status rows."""
    rows: dict[str, dict[str, Any]] = {}

    async def done() -> bool:
        nonlocal rows
        rows = await status(f)
        return all(rows[s]["parts"][part] == {**rows[s]["parts"][part], "state": "converged",
                                              "published": version, "applied": version}
                   for s in f.stores)

    await until_true(done, what=f"every store runs {part} {version}", within_s=45)
    return rows


@contextlib.asynccontextmanager
async def store_devices(agents: list[Agent]) -> AsyncIterator[list[AudioUnitSim]]:
    units, aps = [], []
    try:
        for agent in agents:
            bus = agent.config.local_bus
            units.append(await start_audio_unit_sim(bus, unit_id="U1", tick_s=0.1,
                                                    status_interval_s=0.2))
            aps.append(await start_esl_ap_sim(bus, ap_id="AP1", labels=list(LABELS),
                                              checkin_interval_s=0.2, miss_prob=0.0,
                                              tick_s=0.05))
        yield units
    finally:
        for sim in [*units, *aps]:
            await sim.aclose()


async def upload(f: Fleet, track: str) -> None:
    r = await f.http.post("/api/v1/artifacts", content=asset(track), headers=auth(ADMIN),
                          params={"kind": "asset", "target": "content", "version": track})
    assert r.status_code == 201, r.text


async def test_hq_sees_when_each_store_took_a_price_and_an_announcement(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    async with fleet(tmp_path, mosquitto_factory, 2, content_signer=SnapshotSigner.generate(),
                     devices=DEVICES, till=True) as f, store_devices(f.agents) as units:
        # a price: the tills take it, the labels show it
        r = await f.http.post("/api/v1/price-books", headers=auth(ADMIN), json={
            "currency": "EUR", "items": [{"sku": sku, "name": sku, "price": 100 + i}
                                         for i, sku in enumerate(LABELS.values())]})
        assert r.status_code == 201, r.text
        book = str(r.json()["version"])
        published_ms = time.time() * 1000
        rows = await part_converged(f, "pricebook", book)
        for store in f.stores:  # taken after HQ published it, by the box's clock
            assert published_ms - 5_000 < rows[store]["parts"]["pricebook"]["applied_ms"]

        async def labels_current() -> bool:
            rows = await status(f)
            return all(rows[s]["labels"] == {"current": 3, "pending": 0, "stale": 0}
                       for s in f.stores)

        await until_true(labels_current, what="every store's labels current", within_s=45)

        # an announcement: saved, published in each store's manifest, played
        for track in ("near", "open", "m2"):
            await upload(f, track)
        r = await f.http.put("/api/v1/audio/schedule", headers=auth(ADMIN),
                             json=spec("08:00"))
        assert r.status_code == 201, r.text
        first = str(r.json()["version"])
        r = await f.http.post("/api/v1/audio/schedule/publish", headers=auth(ADMIN),
                              json={"stores": f.stores})
        assert r.status_code == 201, r.text
        assert set(r.json()["manifests"]) == set(f.stores) and r.json()["failed"] == []
        rows = await part_converged(f, "schedule", first)
        # converged means played: every unit already holds the recording it was sent
        assert all(sha("near") in u.assets for u in units)
        applied_first = {s: rows[s]["parts"]["schedule"]["applied_ms"] for s in f.stores}

        async def all_play(track: str) -> bool:
            """Every unit holds the recording (sent over its bus) and plays it."""
            segments = [u.current.get(("floor", "music")) for u in units]
            return all(seg is not None and seg.sha256 == sha(track) and sha(track) in u.assets
                       for u, seg in zip(units, segments, strict=True))

        await until_true(lambda: all_play("near"), what="the units play the published music")

        # the announcement moves, the music changes: a new version, taken again, later
        r = await f.http.put("/api/v1/audio/schedule", headers=auth(ADMIN),
                             json=spec("09:30", music="m2"))
        second = str(r.json()["version"])
        assert second != first
        r = await f.http.post("/api/v1/audio/schedule/publish", headers=auth(ADMIN),
                              json={})  # every store with an audio unit
        assert r.status_code == 201 and set(r.json()["manifests"]) == set(f.stores), r.text
        rows = await part_converged(f, "schedule", second)
        assert all(sha("m2") in u.assets for u in units)
        for store in f.stores:
            assert rows[store]["parts"]["schedule"]["applied_ms"] > applied_first[store]
            assert rows[store]["parts"]["pricebook"]["state"] == "converged"  # untouched
        await until_true(lambda: all_play("m2"), what="the units play the new music")

        # the field tech's view of the same
        done = await asyncio.to_thread(fleet_cli, str(f.http.base_url), ADMIN, "content",
                                       "status", "--json", config=tmp_path / "config")
        assert done.returncode == 0, done.stderr
        shown = {row["store_id"]: row for row in json.loads(done.stdout)}
        assert {s: shown[s]["parts"]["schedule"]["applied"] for s in f.stores} == {
            s: second for s in f.stores}
        table = await asyncio.to_thread(fleet_cli, str(f.http.base_url), ADMIN, "content",
                                        "status", config=tmp_path / "config")
        assert table.returncode == 0, table.stderr
        assert f"v{second} since" in table.stdout and f"v{book} since" in table.stdout
        assert "3 current, 0 pending, 0 stale" in table.stdout
