"""A fleet-wide command on the real wire (decision 0061): 50 simulated store boxes
(``firmware_sim.loadgen``, each its own MQTT session) on a real Mosquitto, the cloud as its
own process (API, MQTT publisher, ingest); ``fleet cmd --all agent ping`` (the console
script, one POST, a progress bar) collects every store's result, and a fan-out of a
command the boxes do not know counts every store as failed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench._services import ADMIN_TOKEN, cloud
from firmware_sim.loadgen.fleet import LoadFleet
from firmware_sim.loadgen.identity import identities, store_ids
from firmware_sim.loadgen.store import StoreSettings
from firmware_sim.mqtturl import bus_address
from tests.firmware_sim.test_loadgen import until
from tests.services import Mosquitto

STORES = 50
FLEET = Path(sys.executable).parent / "fleet"


@pytest.mark.mosquitto
async def test_a_fanout_to_50_stores_collects_every_result(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    with cloud(tmp_path / "cloud", broker=mosquitto.url) as (api, _):
        who = identities(store_ids("FC", STORES), broker=bus_address(mosquitto.url))
        settings = StoreSettings(tele_interval_s=60.0, ready_timeout_s=3.0,
                                 reconnect_min_s=0.2, reconnect_max_s=1.0)
        fleet = LoadFleet(who, settings=settings, rate_per_store=0.0,
                          status_file=tmp_path / "status.json")
        stop = asyncio.Event()
        runner = asyncio.create_task(fleet.run(stop), name="fleet")
        admin = httpx.AsyncClient(base_url=api, timeout=30,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        try:
            await until("every store ready", lambda: all(s.ready for s in fleet.stores),
                        timeout_s=120)
            answered = fleet.stats.commands_answered
            proc = await asyncio.to_thread(
                subprocess.run,
                [str(FLEET), "cmd", "--all", "agent", "ping", "--wait", "90", "--api", api,
                 "--token", ADMIN_TOKEN], capture_output=True, text=True, timeout=150)
            assert proc.returncode == 0, proc.stderr
            done = json.loads(proc.stdout)
            assert (done["stores"], done["done"], done["failures"]) == (STORES, True, [])
            assert done["counts"] == {"sent": 0, "ok": STORES, "failed": 0, "expired": 0}
            assert fleet.stats.commands_answered == answered + STORES  # each box once

            # every store's own command holds its box's answer
            fid = done["fanout_id"]
            r = await admin.post("/api/v1/fleet/commands", json={
                "all": True, "name": "no_such_command", "ttl_s": 60})
            assert r.status_code == 202, r.text
            odd = r.json()["fanout_id"]

            async def odd_done() -> bool:
                got = (await admin.get(f"/api/v1/fleet/commands/{odd}")).json()
                return bool(got["done"])
            await until("every store answered the unknown command", odd_done, timeout_s=90)
            got = (await admin.get(f"/api/v1/fleet/commands/{odd}")).json()
            assert got["counts"] == {"sent": 0, "ok": 0, "failed": STORES, "expired": 0}
            assert got["by_status"] == {"unknown_command": STORES}
            failures = (await admin.get(f"/api/v1/fleet/commands/{odd}/failures",
                                        params={"limit": 500})).json()
            assert sorted(f["store_id"] for f in failures) == sorted(
                s.store_id for s in fleet.stores)
            first = (await admin.get(f"/api/v1/fleet/commands/{fid}")).json()
            assert first["by_status"] == {"ok": STORES}
        finally:
            await admin.aclose()
            stop.set()
            await asyncio.wait_for(runner, 60)
