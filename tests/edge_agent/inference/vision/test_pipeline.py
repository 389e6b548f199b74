"""The composed pipeline: cameras and cart snapshots into one classifier, cameras
restarted when they fail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_agent.drivers.testing import FakeContext
from edge_agent.inference.vision import VisionModel
from edge_agent.inference.vision.pipeline import VisionPipeline
from protocols.clock import ManualClock
from protocols.vision import PRODUCT_CATEGORIES, CategorySeen, encode_snapshot
from tests.edge_agent.helpers import wait_until
from tests.edge_agent.inference.vision.conftest import metric
from tests.edge_agent.inference.vision.test_frames import write_video


async def test_camera_file_and_cart_snapshot_reach_one_stream(
    model: VisionModel, product_jpeg: Callable[[int, int], bytes], tmp_path: Path
) -> None:
    still = cv2.imdecode(np.frombuffer(product_jpeg(8, 2), np.uint8), cv2.IMREAD_COLOR)
    assert still is not None
    write_video(tmp_path / "cam.avi", [still] * 10)
    ctx = FakeContext(clock=ManualClock())
    seen: list[CategorySeen] = []
    async with VisionPipeline(
        ctx,
        model=model,
        cameras={"cam-1": str(tmp_path / "cam.avi")},
        every_n=5,
        queue_size=16,
        min_confidence=0.0,
        on_seen=seen.append,
    ) as vision:
        await ctx.deliver_local(
            "cart", "C9", "snapshot", encode_snapshot(product_jpeg(3, 2), snapshot_id="s", ts=5)
        )
        await wait_until(lambda: len(seen) >= 3, within_s=10, what="three CategorySeen")
        await asyncio.wait_for(vision.drain(), 10)
    # each source's own product (camera: egg carton, cart snapshot: milk carton)
    assert sorted((s.source, s.category) for s in seen) == [
        ("C9", PRODUCT_CATEGORIES[3]), ("cam-1", PRODUCT_CATEGORIES[8]),
        ("cam-1", PRODUCT_CATEGORIES[8])]
    assert vision.restarts["cam-1"] == 0  # a file that ends is not a failure


async def test_failing_camera_is_reopened_and_counted(model: VisionModel, tmp_path: Path) -> None:
    ctx = FakeContext(clock=ManualClock())
    missing = str(tmp_path / "unplugged.avi")
    async with VisionPipeline(
        ctx,
        model=model,
        cameras={"cam-x": "rtsp://127.0.0.1:1/none", "cam-y": missing},
        carts=False,
        restart_min_s=0.01,
        restart_max_s=0.02,
    ) as vision:
        await wait_until(
            lambda: vision.restarts["cam-x"] >= 2 and vision.restarts["cam-y"] >= 2,
            within_s=20,
            what="both cameras reopened twice",
        )
    failures = metric(ctx.registry, "storefleet_vision_errors_total", where="source")
    assert failures >= 4
    assert not ctx.handlers  # carts=False: no snapshot subscription
