"""The procedural dataset is deterministic, balanced and held out by seed; the committed
model matches its recorded metrics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edge_agent.inference.vision import VisionModel
from models.vision import synth
from protocols.vision import PRODUCT_CATEGORIES

HERE = Path(synth.__file__).parent
# train.py needs torch (the optional `train` extra); its seeds are recorded in metrics.json.
METRICS = json.loads((HERE / "metrics.json").read_text())
TRAIN_SEED, TEST_SEED = METRICS["train_seed"], METRICS["test_seed"]


def test_same_seed_same_images() -> None:
    a = synth.render_jpeg(3, np.random.default_rng(11))
    b = synth.render_jpeg(3, np.random.default_rng(11))
    c = synth.render_jpeg(3, np.random.default_rng(12))
    assert a == b and a != c


def test_dataset_is_balanced_shuffled_and_decoded() -> None:
    x, y = synth.make_dataset(3, seed=5)
    assert x.shape == (3 * len(PRODUCT_CATEGORIES), synth.SIZE, synth.SIZE, 3)
    assert x.dtype == np.uint8
    assert np.bincount(y).tolist() == [3] * len(PRODUCT_CATEGORIES)
    assert y.tolist() != sorted(y.tolist())
    x2, y2 = synth.make_dataset(3, seed=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_held_out_set_is_harder_and_disjoint() -> None:
    easy, hard = synth.Nuisance(), synth.Nuisance.hard()
    assert hard.rotation_deg > easy.rotation_deg
    assert hard.jpeg_quality[1] < easy.jpeg_quality[1]
    assert hard.hand_size[1] > easy.hand_size[1]
    assert TEST_SEED != TRAIN_SEED
    train, _ = synth.make_dataset(2, seed=TRAIN_SEED)
    test, _ = synth.make_dataset(2, seed=TEST_SEED, hard=True)
    flat = {hashlib.sha256(img.tobytes()).hexdigest() for img in train}
    assert not flat & {hashlib.sha256(img.tobytes()).hexdigest() for img in test}


def test_every_category_draws_something() -> None:
    for k in range(len(PRODUCT_CATEGORIES)):
        layer = np.zeros((synth.SIZE, synth.SIZE, 3), np.uint8)
        mask = np.zeros((synth.SIZE, synth.SIZE), np.uint8)
        synth.DRAW[k](layer, mask, np.random.default_rng(k))
        covered = (mask > 0).mean()
        assert 0.08 < covered < 0.8, (PRODUCT_CATEGORIES[k], covered)


def test_committed_model_matches_its_metrics_and_card() -> None:
    model = HERE / "product_cnn.onnx"
    metrics = METRICS
    size = VisionModel(model).info.input_size
    assert hashlib.sha256(model.read_bytes()).hexdigest() == metrics["sha256"]
    assert model.stat().st_size < 2 * 1024 * 1024
    assert metrics["n"] >= 1000
    card = (HERE / "MODEL_CARD.md").read_text()
    assert f"{metrics['accuracy'] * 100:.1f}%" in card  # the card states the real figure
    assert "synthetic" in card.lower()
    assert f"{size}x{size}" in card
