"""Indoor positioning models: training (``train.py``), the kNN baseline, and the
committed ONNX models trained on the calib2021 flat (see ``MODEL_CARD.md``)."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
# trained on all four calib2021 survey tracks: the model a store box would run in that flat
DEFAULT_MODEL = MODEL_DIR / "calib2021_flat.onnx"
# trained on tracks 1-3 only, so track 4 stays unseen: for tests and the model card
HOLDOUT_MODEL = MODEL_DIR / "calib2021_flat_holdout4.onnx"
CALIB2021 = "ble-rss-calib2021"


def dataset_dir(name: str = CALIB2021) -> Path:
    """Shared datasets live beside the repository (``../shared/datasets``), resolved from
    this file rather than the working directory; ``STOREFLEET_DATASETS`` overrides."""
    root = os.environ.get("STOREFLEET_DATASETS")
    base = Path(root) if root else MODEL_DIR.parents[1].parent / "shared" / "datasets"
    return base / name
