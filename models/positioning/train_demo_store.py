"""Train the demo store's positioning model from a simulated site survey.

    python -m models.positioning.train_demo_store  # writes demo_store.onnx
    python -m models.positioning.train_demo_store --check  # rebuild, compare, score; 1: differs

The demo layout (``firmware_sim/layouts/demo_store.toml``) has seven BLE anchors and no
recorded survey, so one is simulated with ``firmware_sim.rf``, the radio the demo's
carts hear (``CartSimulator(site_radio=True)``, same ``radio_env_seed``): a survey robot
drives two lawnmower passes over the floor (rows east-west 1 m apart, then columns
north-south 1.5 m apart), scanning at 3 Hz. The surveys are written as survey CSVs and
trained by the same function as ``storefleet positioning train`` (``train_files``), with
the layout's outline and zones as the floor plan, so the model file carries the zones
the coupon triggers use. Everything is seeded: the same inputs give the same file.

Afterwards a shopper track the survey never saw (walking pace, body blocking, another
seed) is replayed through the agent's ``Positioner`` and scored, against the demo's
fallback (zone of the strongest anchor) for the zone.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import random
import tempfile
from pathlib import Path

import numpy as np

from edge_agent.inference.positioning import FloorPlan, Positioner, PositionModel, Zone
from edge_agent.inference.positioning.pipeline import replay_rows
from firmware_sim import rf
from firmware_sim.layouts import DEFAULT_LAYOUT, Layout
from models.positioning import MODEL_DIR
from models.positioning.train import train_files

logger = logging.getLogger(__name__)

DEMO_MODEL = MODEL_DIR / "demo_store.onnx"
ANCHOR_Z_M = 2.5  # ceiling-mounted, as firmware_sim.rf assumes for 2-D anchor positions
SURVEY_SEEDS = (101, 102)  # one per pass
TRACK_SEED = 909  # the held-out shopper walk
MARGIN_M = 0.5  # the robot keeps off the outer walls


def _anchors(layout: Layout) -> dict[str, tuple[float, float]]:
    return {b.key: b.pos for b in layout.beacons}


def survey_rows(layout: Layout) -> list[list[dict[str, float | None]]]:
    """Two survey passes: east-west rows, then north-south columns."""
    x0, y0 = MARGIN_M, MARGIN_M
    x1, y1 = layout.width_m - MARGIN_M, layout.height_m - MARGIN_M
    rows_pass = rf.lawnmower((x0, y0, x1, y1), spacing=1.0)
    cols_pass = [(y, x) for x, y in rf.lawnmower((y0, x0, y1, x1), spacing=1.5)]
    out = []
    t0 = 0.0
    for seed, waypoints in zip(SURVEY_SEEDS, (rows_pass, cols_pass), strict=True):
        rows = rf.survey(
            _anchors(layout),
            waypoints,
            rng=random.Random(seed),
            t0=t0,
            env_seed=layout.radio_env_seed,
        )
        t0 = float(rows[-1]["ts"] or 0.0) + 60.0  # a break between passes
        out.append(rows)
    return out


def _write_inputs(layout: Layout, folder: Path) -> tuple[list[Path], Path, Path, Path]:
    ids = sorted(_anchors(layout))
    surveys = []
    for n, rows in enumerate(survey_rows(layout), start=1):
        path = folder / f"demo_survey{n}.csv"
        rf.write_csv(path, rows, anchor_ids=ids)
        surveys.append(path)
    anchors = folder / "anchors.csv"
    with anchors.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "x", "y", "z"])
        for b in layout.beacons:
            w.writerow([b.key, b.pos[0], b.pos[1], ANCHOR_Z_M])
    outline = folder / "layout.csv"
    with outline.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x", "y"])
        for x, y in (
            (0, 0),
            (layout.width_m, 0),
            (layout.width_m, layout.height_m),
            (0, layout.height_m),
        ):
            w.writerow([x, y])
    zones = folder / "zones.csv"
    with zones.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "x0", "y0", "x1", "y1"])
        for z in layout.zones:
            w.writerow([z.id, *z.rect])
    return surveys, anchors, outline, zones


def train(layout_path: Path = DEFAULT_LAYOUT) -> bytes:
    layout = Layout.load(layout_path)
    with tempfile.TemporaryDirectory(prefix="sf-demo-survey-") as tmp:
        surveys, anchors, outline, zones = _write_inputs(layout, Path(tmp))
        return train_files(surveys, anchors_path=anchors, layout_path=outline, zones_path=zones)


def score(model_path: Path, layout_path: Path = DEFAULT_LAYOUT) -> dict[str, float]:
    """Replay a held-out shopper walk; errors in metres and zone agreement."""
    layout = Layout.load(layout_path)
    rng = random.Random(TRACK_SEED)
    stops = [
        layout.entrance,
        *(s.pos for s in rng.sample(list(layout.shelves), 6)),
        layout.entrance,
    ]
    rows = rf.track(
        _anchors(layout), stops, rng=rng, speed=1.0, rate_hz=5.0, env_seed=layout.radio_env_seed
    )
    model = PositionModel(model_path)
    ids = model.anchor_ids
    ts = np.array([r["ts"] for r in rows], dtype=np.float64)
    truth = np.array([(r["x"], r["y"]) for r in rows], dtype=np.float64)
    rssi = np.array(
        [[np.nan if r.get(a) is None else r[a] for a in ids] for r in rows], dtype=np.float64
    )
    est = replay_rows(Positioner(model), "track", ts, rssi, ids)
    ok = ~np.isnan(est[:, 0])
    err = np.hypot(*(est[ok] - truth[ok]).T)
    plan = FloorPlan(
        outline=(
            (0, 0),
            (layout.width_m, 0),
            (layout.width_m, layout.height_m),
            (0, layout.height_m),
        ),
        zones=tuple(Zone(z.id, z.rect) for z in layout.zones),
    )
    true_zone = [plan.zone_at(x, y) for x, y in truth[ok]]
    zone_hits = np.mean(
        [plan.zone_at(x, y) == z for (x, y), z in zip(est[ok], true_zone, strict=True)]
    )
    # the fallback: zone of the strongest anchor heard in each scan window
    zone_of = {b.key: layout.zone_at(b.pos) for b in layout.beacons}
    strongest = [
        max(((r[a], a) for a in ids if r.get(a) is not None), default=(None, None))[1]
        for r, keep in zip(rows, ok, strict=True)
        if keep
    ]
    beacon_hits = np.mean(
        [zone_of.get(a) == z if a else False for a, z in zip(strongest, true_zone, strict=True)]
    )
    return {
        "rows": float(ok.sum()),
        "median_m": float(np.median(err)),
        "p90_m": float(np.percentile(err, 90)),
        "zone_agreement": float(zone_hits),
        "strongest_beacon_zone_agreement": float(beacon_hits),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEMO_MODEL)
    ap.add_argument(
        "--check", action="store_true", help="rebuild in memory and report whether it matches --out"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = train()
    digest = hashlib.sha256(data).hexdigest()[:16]
    same = args.out.exists() and args.out.read_bytes() == data
    if args.check:
        print(
            f"rebuilt {len(data)} bytes sha256 {digest}: "
            f"{'identical to' if same else 'DIFFERS from'} {args.out}"
        )
    else:
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data)} bytes, sha256 {digest})")
    if args.check and not same:  # score what the script builds now, beside the file
        with tempfile.TemporaryDirectory(prefix="sf-demo-model-") as tmp:
            rebuilt = Path(tmp) / "rebuilt.onnx"
            rebuilt.write_bytes(data)
            _print_score("rebuilt", score(rebuilt))
    if args.out.exists():
        _print_score(str(args.out), score(args.out))
    return 1 if args.check and not same else 0


def _print_score(label: str, result: dict[str, float]) -> None:
    print(f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    raise SystemExit(main())
