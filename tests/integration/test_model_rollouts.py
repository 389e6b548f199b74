"""A model rollout end to end (decision 0042) on the rollout test fleet (real Mosquitto,
the cloud under uvicorn with ingest, real agents running the vision module): a
re-released vision model completes wave by wave and every box classifies with it; a
signed model that fails the check after its swap is replaced back on the canary, the
rollout halts there and the other box never gets it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.app import Agent
from edge_agent.modules.vision import Vision
from tests.cloud.conftest import ADMIN, auth
from tests.edge_agent import model_variants as variants
from tests.edge_agent.helpers import metric
from tests.integration.rollout_fleet import Fleet, fleet
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


async def upload(f: Fleet, path: Path, version: str) -> str:
    body = await asyncio.to_thread(path.read_bytes)
    r = await f.http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                          params={"kind": "model", "target": "model:vision",
                                  "version": version})
    assert r.status_code == 201, r.text
    return str(r.json()["payload"]["sha256"])


async def roll_out(f: Fleet, sha: str) -> str:
    r = await f.http.post("/api/v1/rollouts", headers=auth(ADMIN), json={
        "sha256": sha, "device": "agent", "stores": f.stores, "canary_size": 1,
        "wave_size": 1})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def tag(agent: Agent) -> str:
    pipeline = agent.get(Vision).pipeline
    assert pipeline is not None
    return pipeline.classifier.model.info.tag


async def test_a_vision_model_rolls_out_and_a_failing_one_is_replaced_back_and_halts(
        tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]) -> None:
    good = variants.vision_release(tmp_path / "good.onnx", "1.1.0")
    bad = variants.vision_nan_on_pixels(tmp_path / "bad.onnx")
    modules: dict[str, Any] = {"vision": {}}
    async with fleet(tmp_path, mosquitto_factory, 2, modules=modules) as f:
        assert [tag(a) for a in f.agents] == ["product_cnn@1.0.0"] * 2
        done = await f.until(await roll_out(f, await upload(f, good, "1.1.0")), "completed")
        assert [t["state"] for t in done["targets"]] == ["succeeded", "succeeded"]
        assert [tag(a) for a in f.agents] == ["product_cnn@1.1.0"] * 2
        assert [metric(a, "storefleet_model_installs_total", model="vision",
                       result="succeeded") for a in f.agents] == [1, 1]

        halted = await f.until(await roll_out(f, await upload(f, bad, "6.6.6")), "halted")
        canary, other = halted["targets"]
        assert canary["state"] == "failed" and "replaced back" in canary["detail"]
        assert other["state"] == "waiting"
        assert [tag(a) for a in f.agents] == ["product_cnn@1.1.0"] * 2
        assert metric(f.agents[0], "storefleet_model_installs_total", model="vision",
                      result="replaced_back") == 1
