"""Model rollouts on a running agent (decision 0042): the installer of kind ``model``
(as the updates module gets it from ``INSTALLERS``) checks a candidate ONNX model
against the running module's contract, swaps it in, checks it again through the
module's own path and replaces it back when that fails; the box starts with it after
a restart, and falls back to the configured model, counted, when it cannot."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from edge_agent.app import Agent
from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.inference.triggers.storemap import PositionerLocator
from edge_agent.inference.vision import Frame, VisionClassifier, VisionModel
from edge_agent.inference.vision.slot import VisionSlot, probe_jpeg
from edge_agent.installers import Installer, Offer, installers
from edge_agent.modules.in_aisle import InAisleModule
from edge_agent.modules.vision import Vision
from firmware_sim.layouts import DEFAULT_LAYOUT
from models.positioning.train_demo_store import DEMO_MODEL
from protocols.artifacts import ArtifactKind
from tests.edge_agent import model_variants as variants
from tests.edge_agent.helpers import make_config, metric, running_agent
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto

VISION = {"vision": {"min_confidence": 0.0}}  # every classification is published
IN_AISLE = {"in_aisle": {"store_layout": DEFAULT_LAYOUT, "retail_data": SAMPLE_DATA,
                         "positioning_model": DEMO_MODEL}}


def offer(path: Path, target: str, version: str, device: str = "agent") -> Offer:
    return Offer(rollout_id=f"r-{version}", sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                 target=target, version=version, device=device, deadline_ms=0)


def model_installer(agent: Agent) -> Installer:
    return installers(agent)[ArtifactKind.MODEL]


def vision_tag(agent: Agent) -> str:
    pipeline = agent.get(Vision).pipeline
    assert pipeline is not None
    return pipeline.classifier.model.info.tag


def installs(agent: Agent, model: str, result: str) -> float:
    return metric(agent, "storefleet_model_installs_total", model=model, result=result)


@contextlib.asynccontextmanager
async def box(tmp_path: Path, broker: Mosquitto, modules: dict[str, Any]
              ) -> AsyncIterator[Agent]:
    config = make_config(tmp_path, uplink=broker, local=None, store_id="S-models",
                         modules=modules)
    async with running_agent(config, connected=False) as agent:
        yield agent


async def seen_tag(agent: Agent) -> str:
    """The model tag of a cart snapshot classified by the running pipeline."""
    pipeline = agent.get(Vision).pipeline
    assert pipeline is not None
    stream = pipeline.stream()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # subscribed before the frame goes in
    pipeline.service.submit(Frame(source="C1", ts_ms=1, jpeg=probe_jpeg()))
    try:
        return (await asyncio.wait_for(first, 10)).model
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator


async def test_a_good_vision_model_replaces_the_running_one_and_survives_a_restart(
        tmp_path: Path, uplink_broker: Mosquitto) -> None:
    good = variants.vision_release(tmp_path / "good.onnx", "1.1.0")
    async with box(tmp_path, uplink_broker, VISION) as agent:
        assert vision_tag(agent) == "product_cnn@1.0.0"
        installer = model_installer(agent)
        assert installer.refuse(offer(good, "model:vision", "1.1.0")) is None
        assert installer.busy(offer(good, "model:vision", "1.1.0")) is None
        step, detail = await installer.install(offer(good, "model:vision", "1.1.0"), good)
        assert (step, detail) == ("succeeded", "vision model 1.1.0")
        assert vision_tag(agent) == "product_cnn@1.1.0"
        assert await seen_tag(agent) == "product_cnn@1.1.0"  # the live path uses it
        assert installs(agent, "vision", "succeeded") == 1
    good.unlink()  # the box keeps its own copy, not the file it was handed
    async with box(tmp_path, uplink_broker, VISION) as agent:
        assert vision_tag(agent) == "product_cnn@1.1.0"
        assert metric(agent, "storefleet_model_fallbacks_total", model="vision",
                      reason="tampered") == 0
    copy = next((tmp_path / "agent" / "models" / "vision").glob("*.onnx"))
    copy.write_bytes(copy.read_bytes()[:-10])  # a disk that lost the end of the file
    async with box(tmp_path, uplink_broker, VISION) as agent:
        assert vision_tag(agent) == "product_cnn@1.0.0"  # the configured (shipped) one
        assert metric(agent, "storefleet_model_fallbacks_total", model="vision",
                      reason="tampered") == 1


async def test_a_model_that_does_not_fit_is_refused_and_the_old_one_keeps_running(
        tmp_path: Path, uplink_broker: Mosquitto) -> None:
    async with box(tmp_path, uplink_broker, VISION) as agent:
        running = agent.get(Vision).pipeline.classifier.model  # type: ignore[union-attr]
        installer = model_installer(agent)
        for build, why in ((variants.vision_nchw, "does not match input_size"),
                           (variants.vision_extra_label, "is not (batch, 10 labels)"),
                           (variants.vision_nan, "NaN")):
            path = build(tmp_path / f"{build.__name__}.onnx")
            step, detail = await installer.install(offer(path, "model:vision", "9.0.0"), path)
            assert step == "failed" and detail.startswith("refused: ") and why in detail
            assert agent.get(Vision).pipeline.classifier.model is running  # type: ignore[union-attr]
        assert installs(agent, "vision", "refused") == 3
        assert await seen_tag(agent) == "product_cnn@1.0.0"
        assert not (tmp_path / "agent" / "models" / "vision.json").exists()
        # not for this box: refused when offered, before anything is fetched
        good = variants.vision_release(tmp_path / "good.onnx", "1.1.0")
        assert installer.refuse(offer(good, "model:vision", "1.1.0", device="cam-1")) == (
            'a model artifact installs on the agent (device "agent")')
        assert installer.refuse(offer(good, "model:positioning", "1.1.0")) == (
            "model:positioning runs in the in_aisle module, which does not run on this box")


async def test_a_model_that_fails_after_the_swap_is_replaced_back(
        tmp_path: Path, uplink_broker: Mosquitto) -> None:
    bad = variants.vision_nan_on_pixels(tmp_path / "bad.onnx")
    async with box(tmp_path, uplink_broker, VISION) as agent:
        running = agent.get(Vision).pipeline.classifier.model  # type: ignore[union-attr]
        step, detail = await model_installer(agent).install(
            offer(bad, "model:vision", "6.6.6"), bad)
        assert step == "failed" and detail.startswith("replaced back by the previous model")
        assert agent.get(Vision).pipeline.classifier.model is running  # type: ignore[union-attr]
        assert await seen_tag(agent) == "product_cnn@1.0.0"
        assert installs(agent, "vision", "replaced_back") == 1
        assert list((tmp_path / "agent" / "models" / "vision").glob("*")) == []
    async with box(tmp_path, uplink_broker, VISION) as agent:  # nothing recorded
        assert vision_tag(agent) == "product_cnn@1.0.0"


async def test_positioning_model_swapped_under_the_carts_and_replaced_back(
        tmp_path: Path, uplink_broker: Mosquitto) -> None:
    good = variants.positioning_release(tmp_path / "good.onnx", "2.0.0")
    bad = variants.positioning_nan_on_signal(tmp_path / "bad.onnx")
    models = tmp_path / "agent" / "models" / "positioning"
    async with box(tmp_path, uplink_broker, IN_AISLE) as agent:
        triggers = agent.get(InAisleModule).in_aisle.triggers
        first = triggers.locator
        assert isinstance(first, PositionerLocator)
        installer = model_installer(agent)
        step, _ = await installer.install(offer(bad, "model:positioning", "6.6.6"), bad)
        assert step == "failed" and triggers.locator is first
        assert installs(agent, "positioning", "replaced_back") == 1
        step, _ = await installer.install(offer(good, "model:positioning", "2.0.0"), good)
        assert step == "succeeded" and triggers.locator is not first
        assert isinstance(triggers.locator, PositionerLocator)
        assert triggers.locator.positioner.model.name.startswith(str(models))
        store_map = triggers.locator.map
        assert store_map is not None
        located = triggers.locator.locate([(a.key, -65) for a in store_map.anchors],
                                          cart_id="c1", t=1.0)
        assert located is not None and located.zone is not None
    async with box(tmp_path, uplink_broker, IN_AISLE) as agent:
        locator = agent.get(InAisleModule).in_aisle.triggers.locator
        assert isinstance(locator, PositionerLocator)
        assert locator.positioner.model.name.startswith(str(models))


def test_a_swap_never_mixes_two_models_in_one_classification(tmp_path: Path) -> None:
    """Two models of different input sizes swapped back and forth while a worker thread
    classifies (as the pipeline's does): every batch is cropped, run and labelled by one
    of them, or the sizes would clash inside onnxruntime or numpy."""
    shipped = VisionModel(intra_op_threads=1)
    small = VisionModel(variants.vision_small(tmp_path / "small.onnx"), intra_op_threads=1)
    classifier = VisionClassifier(shipped, registry=CollectorRegistry())
    slot = VisionSlot(classifier, threads=1)
    frames = [Frame(source="C1", ts_ms=1, jpeg=probe_jpeg())] * 4
    stop = threading.Event()
    errors: list[Exception] = []
    runs = 0

    def classify() -> None:
        nonlocal runs
        while not stop.is_set():
            try:
                classifier.classify_frames(frames)
            except Exception as err:
                errors.append(err)
                return
            runs += 1

    worker = threading.Thread(target=classify, name="test-classify")
    worker.start()
    swaps, until = 0, time.monotonic() + 1.5
    while time.monotonic() < until and worker.is_alive():
        slot.swap((small, shipped)[swaps % 2])
        swaps += 1
        time.sleep(0.0002)
    stop.set()
    worker.join()
    assert errors == [] and runs > 50 and swaps > 500
