"""``python -m edge_agent.inference.vision``: classify files, report bad ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.inference.vision.__main__ import main
from protocols.vision import PRODUCT_CATEGORIES


def test_cli_classifies_files_and_reports_bad_ones(
    tmp_path: Path, product_jpeg: Callable[[int, int], bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(product_jpeg(6, 1))
    bad.write_bytes(b"\xff\xd8 not really \xff\xd9")
    assert main([str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    line = next(x for x in out.splitlines() if x.startswith(str(good)))
    assert line.split()[1] == PRODUCT_CATEGORIES[6]  # the detergent image it was given
    assert "bad.jpg" in err and "bad_jpeg" in err


def test_cli_bad_model_exits_2(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"junk")
    assert main(["--model", str(model)]) == 2
