"""A rollout to 20 boxes (issue 14, "Tests and figures"; decision 0045): the fleet of
``rollout_fleet.fleet`` (real Mosquitto, the cloud under uvicorn with ingest, real
agents each with a vending cabinet simulator on its own pty).

Seven cabinets are a board variant that cannot start firmware 2.0.0: the board verifies
the image, reboots into it, fails to start it and falls back to the 1.0.0 it ran before
(the firmware's rollback); the driver sees the old version and reports ``failed``.

- 2.0.0 (canary 2, waves of 6, 50 % to advance, halt at 3 failures): the canary and
  the first wave (two variants) advance, the second wave (four variants) reaches the
  third failure and halts the rollout; the last wave is never offered; every failed
  board still runs 1.0.0; a second rollout of 2.0.0 to the failed stores skips them
  all and offers nothing.
- 2.0.1, which every board starts, completes wave by wave: in every snapshot watched
  while it runs, a wave has offers only once every target of the wave before succeeded.
- 3.0.0 with its bytes changed in the cloud's blob store after signing, and 3.0.1 whose
  stored signature no longer matches its manifest, each offered to all 20 boxes in one
  wave ("every box": the failure threshold is 20, so no halt cuts the offers short): every
  box refuses it (``storefleet_artifact_refused_total`` by reason), no board is flashed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from cloud.db.models_artifacts import Artifact
from firmware_sim.vending import VendingFaults
from protocols import vending as v
from tests.edge_agent.helpers import metric
from tests.integration.rollout_fleet import fleet, until_true
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

BOXES = 20
VARIANTS = {3, 6, 8, 10, 11, 13, 16}  # boxes whose board cannot start 2.0.0
# 20 cabinets polled every 10 ms (the fleet's default) cost half a core on their own, and
# a loaded CI machine misses 100 ms replies: poll as a real VMC does, a few times a second.
CABINET = {"poll_interval_s": 0.25, "reply_timeout_s": 1.0}
PLAN = {"canary_size": 2, "wave_size": 6, "success_pct": 50, "failure_threshold": 3}
# waves: 0 = boxes 0-1, 1 = 2-7 (2 variants: 4 of 6 succeed, advances), 2 = 8-13
# (4 variants: at most 2 of 6 succeed, cannot advance; the 3rd failure halts),
# 3 = 14-19 (never offered: box 16 would have failed too)
HALTED_WAVE = 2


def image(seed: int) -> bytes:
    return v.firmware_image(random.Random(seed).randbytes(2000))


async def test_twenty_boxes_halt_roll_back_complete_and_refuse_tampering(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    faults = {i: VendingFaults(unbootable=frozenset({"2.0.0"})) for i in VARIANTS}
    async with fleet(tmp_path, mosquitto_factory, BOXES, faults=faults,
                     cabinet_options=CABINET) as f:
        stores = f.stores
        wave_of = {s: 0 if i < 2 else 1 + (i - 2) // 6 for i, s in enumerate(stores)}

        # 2.0.0: halts at the failure threshold in wave 2; the failed boards run 1.0.0
        bad = await f.upload(image(1), "2.0.0")
        first = await f.create(bad, stores, **PLAN)
        halted = await f.until(first["id"], "halted")
        assert halted["reason"].endswith("threshold 3"), halted["reason"]
        offered = {s for s, _ in f.offers(first["id"])}
        assert offered == {s for s in stores if wave_of[s] <= HALTED_WAVE}
        expect_failed = {stores[i] for i in VARIANTS if wave_of[stores[i]] <= HALTED_WAVE}

        async def all_reported() -> bool:
            targets = (await f.get(first["id"]))["targets"]
            return {t["store_id"] for t in targets if t["state"] == "failed"} == expect_failed

        await until_true(all_reported, what="the offered variants' failures")
        for i, (agent, cabinet) in enumerate(zip(f.agents, f.cabinets, strict=True)):
            offered_i = stores[i] in offered
            failed_i = i in VARIANTS and offered_i
            assert cabinet.firmware_version == ("2.0.0" if offered_i and not failed_i
                                                 else "1.0.0"), i
            assert cabinet.bootloader.stats["boot_failed"] == int(failed_i), i
            assert metric(agent, "storefleet_rollout_installs_total",
                          result="failed") == int(failed_i), i

        # never offered again: a rollout of 2.0.0 to the failed stores skips them all
        again = await f.create(bad, sorted(expect_failed), canary_size=1, wave_size=6)
        done = await f.until(again["id"], "completed")
        assert {t["state"] for t in done["targets"]} == {"skipped"}
        assert f.offers(again["id"]) == []

        # 2.0.1 starts on every board: completes wave by wave. In every snapshot of the
        # rollout, a wave has offers only once the wave before it has all succeeded.
        good = await f.upload(image(2), "2.0.1")
        second = await f.create(good, stores, **{**PLAN, "success_pct": 100})
        snapshots = 0
        while (now := await f.get(second["id"]))["state"] == "running":
            snapshots += 1
            state = {t["store_id"]: t["state"] for t in now["targets"]}
            for wave in range(1, 4):
                if any(state[s] != "waiting" for s in stores if wave_of[s] == wave):
                    assert all(state[s] == "succeeded" for s in stores
                               if wave_of[s] == wave - 1), (wave, state)
        assert now["state"] == "completed", now["reason"]
        assert snapshots > 4  # the rollout was watched wave by wave, not only at its end
        assert [c.firmware_version for c in f.cabinets] == ["2.0.1"] * BOXES
        offers = dict(f.offers(second["id"]))
        for wave in range(1, 4):
            assert min(offers[s] for s in stores if wave_of[s] == wave) > max(
                offers[s] for s in stores if wave_of[s] == wave - 1), wave

        # tampered bytes and a broken signature: refused by every box, nothing flashed
        flashed = [c.reboots for c in f.cabinets]
        changed = await f.upload(image(3), "3.0.0")
        blob = tmp_path / "blobs" / changed[:2] / changed
        data = bytearray(blob.read_bytes())
        data[100] ^= 0xFF  # same size: only the hash tells
        blob.write_bytes(bytes(data))
        forged = await f.upload(image(4), "3.0.1")
        with f.app.state.cloud.writer.begin() as session:
            row = session.get(Artifact, forged)
            assert row is not None
            signed = dict(row.signed)
            signed["payload"] = {**signed["payload"], "version": "3.0.9"}
            session.execute(update(Artifact).where(Artifact.sha256 == forged)
                            .values(signed=signed))
        every_box = {"canary_size": BOXES, "failure_threshold": BOXES}
        rollouts = {reason: await f.create(sha, stores, **every_box)
                    for sha, reason in ((changed, "tampered"), (forged, "signature"))}
        for reason, rollout in rollouts.items():
            halted = await f.until(rollout["id"], "halted")
            assert [t["state"] for t in halted["targets"]] == ["failed"] * BOXES
            assert all(t["detail"].startswith(reason) for t in halted["targets"]), reason
            assert [metric(a, "storefleet_artifact_refused_total", reason=reason)
                    for a in f.agents] == [1.0] * BOXES
        assert [c.reboots for c in f.cabinets] == flashed
        assert [c.firmware_version for c in f.cabinets] == ["2.0.1"] * BOXES
