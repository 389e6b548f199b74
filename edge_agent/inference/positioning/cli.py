"""``storefleet positioning``: train a store's model, replay a track, convert calib2021."""

# typer declares options as call defaults by design
# ruff: noqa: B008

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from edge_agent.inference.positioning.errors import PositioningError

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Indoor positioning of carts from BLE scans (ONNX model + particle filter).",
    no_args_is_help=True,
)


@app.command("train")
def train(
    survey: list[Path] = typer.Option(..., "--survey", help="survey CSV (repeatable)"),
    anchors: Path = typer.Option(..., "--anchors", help="anchors CSV: id,x,y,z"),
    out: Path = typer.Option(..., "--out", help="where to write MODEL.onnx"),
    layout: Path | None = typer.Option(None, "--layout", help="floor outline CSV x,y or JSON"),
    zones: Path | None = typer.Option(None, "--zones", help="zones CSV name,x0,y0,x1,y1"),
    max_iter: int = typer.Option(
        800, "--max-iter", help="training epochs (fewer: faster, rougher)"
    ),
) -> None:
    """Train the fingerprint model from one or more site surveys (one recording each)."""
    # imported here: training needs scikit-learn/skl2onnx, the store box does not
    from models.positioning.train import train_files

    try:
        data = train_files(
            survey, anchors_path=anchors, layout_path=layout, zones_path=zones, max_iter=max_iter
        )
    except PositioningError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({len(data)} bytes) from {len(survey)} survey(s)")


@app.command("eval")
def evaluate(
    model: Path = typer.Option(..., "--model", help="MODEL.onnx"),
    track: Path = typer.Option(..., "--track", help="recorded track CSV, rows in time order"),
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
) -> None:
    """Replay a recorded track through the agent's online pipeline and score it."""
    from edge_agent.inference.positioning.evaluate import evaluate_track
    from edge_agent.inference.positioning.model import PositionModel
    from edge_agent.inference.positioning.survey import read_survey

    try:
        m = PositionModel(model)
        t = read_survey(track)
    except PositioningError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    unknown = sorted(set(t.anchor_ids) - set(m.anchor_ids))
    if unknown:
        typer.echo(f"warning: track anchors unknown to the model, ignored: {unknown}", err=True)
    result = evaluate_track(m, t)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        typer.echo(
            f"{result.n} rows: median {result.median_m:.2f} m, p90 {result.p90_m:.2f} m, "
            f"mean {result.mean_m:.2f} m"
        )


@app.command("convert-calib2021")
def convert(
    src: Path = typer.Option(None, "--src", help="dataset folder (default: the shipped copy)"),
    out: Path = typer.Option(
        ..., "--out", help="folder for calib1..4.csv, anchors.csv, layout.csv"
    ),
) -> None:
    """Convert the ble-rss-calib2021 dataset into one survey CSV per recorded track."""
    from edge_agent.inference.positioning.survey import convert_calib2021
    from models.positioning import dataset_dir

    try:
        written = convert_calib2021(src or dataset_dir(), out)
    except (PositioningError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    for p in written:
        typer.echo(str(p))
