"""Audio schedules authored through the API (decision 0048) on SQLite and PostgreSQL:
validated with clear 422s, compiled per store (region, group and store overrides, the
store's time zone, holidays), and published in the stores' signed content manifests
(decision 0050)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import httpx

from cloud.audio import effective_schedule
from cloud.db import make_engine, upgrade
from cloud.db.engine import make_session_factory, writer
from cloud.db.models_artifacts import Artifact
from cloud.ingest.batch import BatchProcessor
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from protocols import encode, topics
from protocols.audio import AudioSchedule
from protocols.clock import ManualClock
from protocols.messages import Birth, DeviceInfo
from protocols.signed import load_public_keys, verify_signed
from tests.cloud.conftest import ADMIN, TECH, api_client, auth, make_settings
from tests.edge_agent.drivers.audio.fixtures import schedule_doc

URL = "/api/v1/audio/schedule"


def seed(db_url: str, shas: set[str]) -> None:
    """s1 and s2 each have an audio unit, s3 has none; the assets are uploaded."""
    upgrade(db_url)
    engine = make_engine(db_url)
    devices = {"s1": [("U1", "audio")], "s2": [("U2", "audio")], "s3": [("p1", "printer")]}
    try:
        sessions = make_session_factory(writer(engine))
        BatchProcessor(sessions, clock=ManualClock(), max_payload=65536).process([
            (topics.state(store), encode(Birth(bd_seq=1, ts=1, agent_version="9", devices=[
                DeviceInfo(device_id=d, kind=k) for d, k in devs])))
            for store, devs in devices.items()])
        with sessions.begin() as session:
            for sha in shas:
                session.add(Artifact(sha256=sha, kind="asset", target="content", version=sha[:16],
                                     size=1, created_ms=0, signed={}))
    finally:
        engine.dispose()


def spec() -> dict[str, Any]:
    doc = schedule_doc()
    del doc["version"]
    doc["dayparts"].append({"name": "holiday", "start": "10:00", "end": "16:00",
                            "playlist": ["xmas"], "holiday": True})
    doc["holidays"] = ["2026-12-25"]
    doc["overrides"] = [
        {"name": "north-lunch", "regions": ["north"], "announcements": [
            {"name": "lunch", "at": "12:30", "track_id": "open"}]},
        {"name": "s2-quiet", "stores": ["s2"], "duck_db": -20.0, "remove": ["promo"]},
    ]
    return doc


async def problem(c: httpx.AsyncClient, body: dict[str, Any], reason: str,
                  status: int = 422) -> str:
    r = await c.put(URL, headers=auth(ADMIN), json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if reason:
        assert r.json()["type"].endswith(f"/{reason}"), r.json()
    return str(r.json()["detail"])


async def test_author_compile_and_publish(db_url: str) -> None:
    body = spec()
    shas = {t["sha256"] for t in body["tracks"].values()}
    seed(db_url, shas - {body["tracks"]["xmas"]["sha256"]})
    publisher = MemoryPublisher()
    async with api_client(create_app(make_settings(db_url), publisher=publisher)) as c:
        r = await c.get(URL, headers=auth(ADMIN))
        assert r.status_code == 404
        # an asset never uploaded, an override naming a track nobody defines, a bad date
        assert "never uploaded" in await problem(c, body, "unknown_asset")
        bad = copy.deepcopy(body)
        bad["overrides"][0]["announcements"][0]["track_id"] = "nope"
        detail = await problem(c, bad, "invalid_schedule")
        assert "north-lunch" in detail and "unknown track ids ['nope']" in detail
        bad = copy.deepcopy(body)
        bad["holidays"] = ["2026-02-30x"]
        await problem(c, bad, "")
        bad = copy.deepcopy(body)
        del bad["overrides"][1]["stores"]
        await problem(c, bad, "")  # an override reaching no store
        assert (await c.put(URL, headers=auth(TECH), json=body)).status_code == 403

        engine = make_engine(db_url)
        try:
            with make_session_factory(writer(engine)).begin() as session:
                xmas = body["tracks"]["xmas"]["sha256"]
                session.add(Artifact(sha256=xmas, kind="asset", target="content",
                                     version=xmas[:16], size=1, created_ms=0, signed={}))
        finally:
            engine.dispose()
        for version in (1, 2):
            r = await c.put(URL, headers=auth(ADMIN), json=body)
            assert r.status_code == 201, r.text
            assert r.json()["version"] == version and r.json()["assets"] == len(shas)
        assert (await c.get(URL, headers=auth(TECH))).json()["spec"]["holidays"] == [
            "2026-12-25"]

        assert (await c.put("/api/v1/regions/north/stores/s1", headers=auth(ADMIN))
                ).status_code == 200
        r = await c.put("/api/v1/stores/s1/maintenance", headers=auth(ADMIN),
                        json={"timezone": "Europe/Berlin", "window": "02:00-04:00"})
        assert r.status_code == 200, r.text
        r = await c.get("/api/v1/stores/s1/audio/schedule?day=2026-12-25", headers=auth(TECH))
        assert r.status_code == 200, r.text
        s1 = r.json()
        assert s1["schedule"]["timezone"] == "Europe/Berlin"
        assert s1["schedule"]["version"] == 2
        assert s1["plan"] == {"day": "2026-12-25", "holiday": True, "dayparts": ["holiday"],
                              "announcements": [], "spots": []}
        r = await c.get("/api/v1/stores/s1/audio/schedule?day=2026-12-24", headers=auth(TECH))
        assert r.json()["plan"]["announcements"] == ["opening", "closing", "lunch"]
        r = await c.get("/api/v1/stores/s2/audio/schedule?day=2026-12-24", headers=auth(TECH))
        s2 = r.json()
        assert s2["schedule"]["timezone"] == "UTC" and s2["schedule"]["duck_db"] == -20.0
        assert s2["plan"]["announcements"] == ["opening", "closing"]
        assert s2["plan"]["spots"] == ["near"]  # the store's override removed the promo
        r = await c.get("/api/v1/stores/s1/audio/schedule?day=2026-12-26", headers=auth(TECH))
        assert r.json()["schedule"]["holidays"] == []  # a past holiday is not carried

        # publish: every store with an audio unit, then a selection
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={})
        assert r.status_code == 201, r.text
        assert r.json()["manifests"] == {"s1": 1, "s2": 1} and r.json()["version"] == 2
        keys = {k["key_id"]: k["public_key"] for k in
                (await c.get("/api/v1/promotions/keys", headers=auth(TECH))).json()}
        manifest = verify_signed(json.loads(
            publisher.retained[topics.content_manifest("s1")].payload),
            load_public_keys(keys.values()))
        schedule = manifest["documents"]["schedule"]
        sent = AudioSchedule.model_validate(schedule)
        assert sent.version == 2 and sent.timezone == "Europe/Berlin"
        assert [a.name for a in sent.announcements] == ["opening", "closing", "lunch"]
        # the recordings ride as the manifest's assets of the schedule, by sha256
        assert {a["sha256"] for a in manifest["assets"]} == {
            t.sha256 for t in sent.tracks.values()}
        assert {a["doc"] for a in manifest["assets"]} == {"schedule"}
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN),
                         json={"regions": ["north"], "stores": ["s3"]})
        assert r.json()["manifests"] == {"s1": 2}  # s1's next manifest
        assert r.json()["without_unit"] == ["s3"]
        r = await c.post(f"{URL}/publish", headers=auth(ADMIN), json={"regions": ["south"]})
        assert r.status_code == 422 and r.json()["type"].endswith("/empty_selection")

    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as session:
            doc = effective_schedule(session, "s1", dt.date(2026, 12, 1))
        assert doc == schedule | {"holidays": ["2026-12-25"]}
    finally:
        engine.dispose()
