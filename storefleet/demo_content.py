"""What HQ does in the demo once the store is up: push the store's content to its
devices through the real paths, and how the demo names device families in its summary.

The shelf labels get their price book as a device command (REST API -> MQTT command ->
agent -> driver -> access point simulator). The audio schedule goes the way HQ runs it
for a chain (decisions 0046, 0048, 0050): the WAV recordings uploaded as content assets,
the chain schedule saved and published into the store's signed content manifest; the
box fetches and verifies the assets, hands them and the schedule to its audio unit, and
reports the ``schedule`` part, which the demo waits for."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# Device kind (as the cloud's device registry shows it) -> the six families of the
# store-devices issue. Generic simulated sensors map to none of them.
FAMILY_OF: Mapping[str, str] = {
    "beacon": "beacons",
    "cart": "carts",
    "esl": "esl",
    "esl_ap": "esl",
    "audio": "audio",
    "vending": "vending",
    "printer": "pos",
    "scanner": "pos",
    "display": "pos",
    "drawer": "pos",
}


def device_families(devices: Iterable[Mapping[str, Any]]) -> list[str]:
    """The families with at least one online device."""
    return sorted({FAMILY_OF[d["kind"]] for d in devices if d["online"] and d["kind"] in FAMILY_OF})


# Three short tracks, real WAV (16-bit mono, 8 kHz: the unit plays what it is sent), each
# a tone of its own.
_TRACKS = {"music-a": (4_000, 330.0), "music-b": (4_000, 440.0), "promo-milk": (2_000, 660.0)}
_RATE = 8_000


@functools.cache
def _asset(track: str) -> bytes:
    from firmware_sim.audio.unit import tone_wav  # numpy: only when the demo runs

    duration_ms, hz = _TRACKS[track]
    return tone_wav(hz, duration_ms / 1000, rate=_RATE, amplitude=0.25)


def audio_schedule(version: int = 1) -> dict[str, Any]:
    return {
        "version": version,
        "tracks": {t: {"sha256": hashlib.sha256(_asset(t)).hexdigest(), "duration_ms": ms}
                   for t, (ms, _) in _TRACKS.items()},
        "zones": {"floor": {"volume_db": -6.0}},
        # Open around the clock so the demo plays whenever it runs.
        "dayparts": [{"name": "all-day", "start": "00:00", "end": "24:00",
                      "playlist": ["music-a", "music-b"]}],
        "spots": [{"name": "milk-promo", "track_id": "promo-milk", "every_s": 60,
                   "priority": 50}],
    }


async def _command(http: httpx.AsyncClient, store_id: str, target: str, name: str,
                   args: dict[str, Any], *, wait_s: float = 15.0) -> dict[str, Any]:
    resp = await http.post(f"/api/v1/stores/{store_id}/commands",
                           json={"name": name, "args": args, "target": target, "ttl_s": 60})
    resp.raise_for_status()
    cmd_id = resp.json()["cmd_id"]
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        result: dict[str, Any] = (await http.get(f"/api/v1/commands/{cmd_id}")).json()
        if result.get("status") != "pending" or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.2)


async def push_store_content(http: httpx.AsyncClient, store_id: str, *,
                             shelf_book: dict[str, Any], wait_s: float = 30.0
                             ) -> dict[str, str]:
    """Send the price book (``esl_price_book`` arguments: version, currency, items) to the
    e-shelf labels, and publish the audio schedule with its recordings in the store's
    content manifest; returns each step's final status ("ok" when done)."""
    statuses: dict[str, str] = {}
    esl = f"{store_id}-esl-01"
    res = await _command(http, store_id, esl, "esl_price_book", shelf_book)
    statuses["esl_price_book"] = str(res.get("status"))
    for track in _TRACKS:
        r = await http.post("/api/v1/artifacts", content=_asset(track), params={
            "kind": "asset", "target": "content", "version": track})
        statuses[f"asset:{track}"] = "ok" if r.status_code in (200, 201) else r.text[:200]
    spec = audio_schedule()
    del spec["version"]  # the cloud numbers the versions it keeps
    r = await http.put("/api/v1/audio/schedule", json=spec)
    statuses["audio_schedule_saved"] = "ok" if r.status_code == 201 else r.text[:200]
    version = str(r.json().get("version")) if r.status_code == 201 else None
    r = await http.post("/api/v1/audio/schedule/publish", json={"stores": [store_id]})
    statuses["audio_schedule_published"] = "ok" if r.status_code == 201 else r.text[:200]
    statuses["audio_schedule_playing"] = await _schedule_taken(http, store_id, version,
                                                               wait_s=wait_s)
    bad = {k: v for k, v in statuses.items() if v != "ok"}
    if bad:
        logger.warning("store content not fully applied: %s", bad)
    return statuses


async def _schedule_taken(http: httpx.AsyncClient, store_id: str, version: str | None, *,
                          wait_s: float) -> str:
    """"ok" once the store reports its audio units run ``version``, else what it says."""
    deadline = asyncio.get_running_loop().time() + wait_s
    part: dict[str, Any] = {}
    while version is not None and asyncio.get_running_loop().time() < deadline:
        rows = (await http.get("/api/v1/content/status",
                               params={"store_id": store_id})).json()
        part = rows[0]["parts"]["schedule"] if rows else {}
        if part.get("state") == "converged" and part.get("applied") == version:
            return "ok"
        await asyncio.sleep(0.5)
    return f"{part.get('state', 'no report')}: {part.get('detail', '')}".strip(": ")
