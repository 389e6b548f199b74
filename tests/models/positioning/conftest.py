"""The shared calib2021 dataset, converted once per session. Missing data skips the
tests locally and fails them in CI (STOREFLEET_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.inference.positioning.survey import convert_calib2021
from models.positioning import dataset_dir


@pytest.fixture(scope="session")
def calib2021(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src = dataset_dir()
    if not (src / "calibration_df.csv").exists():
        msg = f"calib2021 dataset not found at {src} (expected ../shared/datasets beside the repo)"
        if os.environ.get("STOREFLEET_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("calib2021")
    convert_calib2021(src, out)
    yield out
