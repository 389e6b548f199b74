"""The calib2021 survey ships inside the repository and the package: a bare clone (or an
installed wheel) trains and tests without a dataset folder beside it."""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from pathlib import Path

import pytest

from models.positioning import CALIB2021, MODEL_DIR, dataset_dir

REPO = MODEL_DIR.parents[1]
# what convert_calib2021 reads, plus the dataset's README (attribution and licence)
NEEDED = ("calibration_df.csv", "anchors.csv", "layout.csv", "README.md")


def test_the_default_dataset_is_the_copy_inside_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STOREFLEET_DATASETS", raising=False)
    src = dataset_dir()
    assert src.is_relative_to(MODEL_DIR), f"{src} lies outside models/positioning"
    for name in NEEDED:
        assert (src / name).stat().st_size > 0, name
    readme = (src / "README.md").read_text()
    assert "CC BY 4.0" in readme and "10.5281/zenodo.5457591" in readme
    # 4,104 survey rows and a header
    assert len((src / "calibration_df.csv").read_text().splitlines()) == 4_105
    # a full upstream download elsewhere still overrides the shipped copy
    monkeypatch.setenv("STOREFLEET_DATASETS", str(tmp_path))
    assert dataset_dir() == tmp_path / CALIB2021


def test_the_shipped_copy_matches_the_checksums_in_its_source_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STOREFLEET_DATASETS", raising=False)
    src = dataset_dir()
    listed = {}
    for line in (src / "SOURCE.md").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            listed[parts[1]] = parts[0]
    assert set(listed) == set(NEEDED)
    for name, digest in listed.items():
        assert hashlib.sha256((src / name).read_bytes()).hexdigest() == digest, name


def test_every_shipped_data_file_is_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOREFLEET_DATASETS", raising=False)
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["models"]
    models_pkg = MODEL_DIR.parent
    files = [p for p in dataset_dir().iterdir() if p.is_file()]
    assert {p.name for p in files} >= set(NEEDED)
    for path in files:
        rel = path.relative_to(models_pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} is not package data"

