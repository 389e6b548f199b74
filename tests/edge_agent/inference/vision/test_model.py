"""The shipped ONNX model: loads, has our labels, respects thread settings, refuses junk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge_agent.inference.vision import FrameError, ModelError, VisionModel, preprocess
from edge_agent.inference.vision.model import MAX_THREADS, physical_cores, session_threads
from protocols.vision import PRODUCT_CATEGORIES


def test_shipped_model_is_ours(model: VisionModel) -> None:
    assert model.info.labels == PRODUCT_CATEGORIES
    assert model.info.name == "product_cnn"
    assert model.path.stat().st_size < 2 * 1024 * 1024  # small enough for a store rollout
    assert model.info.tag.startswith("product_cnn@")


def test_threads_default_to_physical_cores_capped(model: VisionModel) -> None:
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))
    assert session_threads() == min(physical_cores(), MAX_THREADS)
    assert model.session_options.intra_op_num_threads == session_threads()
    assert model.session_options.inter_op_num_threads == 1


def test_explicit_thread_count_is_used() -> None:
    one = VisionModel(intra_op_threads=1)
    assert one.threads == 1
    assert one.session_options.intra_op_num_threads == 1
    with pytest.raises(ModelError):
        VisionModel(intra_op_threads=0)


def test_predict_gives_probabilities(model: VisionModel) -> None:
    size = model.info.input_size
    batch = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    probs = model.predict(batch)
    assert probs.shape == (5, len(PRODUCT_CATEGORIES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert model.predict(batch[:0]).shape == (0, len(PRODUCT_CATEGORIES))


@pytest.mark.parametrize("content", [b"", b"not an onnx model", b"\x08\x07" + b"\xff" * 64])
def test_junk_model_file_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        VisionModel(path)
    assert err.value.path == str(path)


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        VisionModel(tmp_path / "nope.onnx")


def test_preprocess_centre_crops_and_converts() -> None:
    wide = np.zeros((60, 120, 3), np.uint8)
    wide[:, 30:90] = 200  # the centre square is bright, the sides dark
    grey = np.full((50, 50), 7, np.uint8)
    bgra = np.full((40, 40, 4), 9, np.uint8)
    out = preprocess([wide, grey, bgra], size=24)
    assert out.shape == (3, 24, 24, 3) and out.dtype == np.uint8
    assert out[0].min() == 200  # sides cropped away, not squashed in
    assert (out[1] == 7).all() and (out[2] == 9).all()


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 2), np.uint8),
    ],
)
def test_preprocess_refuses_unusable_frames(frame: np.ndarray) -> None:
    with pytest.raises(FrameError) as err:
        preprocess([frame], size=24)
    assert err.value.reason == "bad_shape"


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sessions_start_no_more_threads_than_configured(model: VisionModel) -> None:
    size = model.info.input_size
    batch = np.zeros((4, size, size, 3), np.uint8)
    before = _os_threads()
    one = VisionModel(intra_op_threads=1)
    one.predict(batch)
    assert _os_threads() == before  # one thread: the graph runs on the caller's thread
    default = VisionModel()
    default.predict(batch)
    # a pool of n intra-op threads is the caller plus n - 1 workers
    assert _os_threads() - before <= default.threads - 1
