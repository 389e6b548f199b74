"""The calib2021 dataset shipped in ``models/positioning/data``, converted once per
session. It is part of the repository, so missing data is a failure, never a skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.inference.positioning.survey import convert_calib2021
from models.positioning import dataset_dir


@pytest.fixture(scope="session")
def calib2021(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src = dataset_dir()
    if not (src / "calibration_df.csv").exists():
        pytest.fail(f"calib2021 dataset not found at {src} (it ships in "
                    "models/positioning/data; is STOREFLEET_DATASETS set to another folder?)")
    out = tmp_path_factory.mktemp("calib2021")
    convert_calib2021(src, out)
    yield out
