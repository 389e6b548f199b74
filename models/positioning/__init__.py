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


# The calib2021 survey ships with the package (``data/ble-rss-calib2021``, CC BY 4.0, see
# its README.md and SOURCE.md), so a bare clone or an installed wheel can train and test.
DATA_DIR = MODEL_DIR / "data"


def dataset_dir(name: str = CALIB2021) -> Path:
    """The folder of dataset ``name``: the copy shipped in ``models/positioning/data``,
    or ``$STOREFLEET_DATASETS/<name>`` when that variable is set (e.g. a full upstream
    download)."""
    root = os.environ.get("STOREFLEET_DATASETS")
    return (Path(root) if root else DATA_DIR) / name
