"""Site-survey and track files: CSV ``ts, x, y, rssi_<anchor id>...`` (empty = not heard),
rows in time order, plus an anchors CSV ``id, x, y, z``. Extra columns (a pandas index, a
heading) are ignored, so the calib2021 dataset's own CSVs read as they are; a file without
a header row is read in calib2021's column order.
"""

from __future__ import annotations

import csv
import itertools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.inference.positioning.errors import SurveyError

FloatArray = npt.NDArray[np.float64]
RSSI_PREFIX = "rssi_"


@dataclass(frozen=True)
class Survey:
    ts: FloatArray  # seconds
    xy: FloatArray  # N x 2, metres
    rssi: FloatArray  # N x len(anchor_ids), dBm, NaN = not heard
    anchor_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def columns(self, anchor_ids: tuple[str, ...]) -> FloatArray:
        """RSSI in the column order of ``anchor_ids`` (anchors absent here read as unheard)."""
        out = np.full((len(self), len(anchor_ids)), np.nan)
        for j, aid in enumerate(anchor_ids):
            if aid in self.anchor_ids:
                out[:, j] = self.rssi[:, self.anchor_ids.index(aid)]
        return out

    def slice(self, start: int, stop: int) -> Survey:
        return Survey(
            self.ts[start:stop], self.xy[start:stop], self.rssi[start:stop], self.anchor_ids
        )


def _seconds(ts: FloatArray) -> FloatArray:
    """Timestamps to seconds: nanoseconds (calib2021) and milliseconds (our wire) are
    recognised by magnitude; epoch seconds stay below 1e11 until the year 5138."""
    if len(ts) == 0:
        return ts
    mag = float(np.nanmedian(np.abs(ts)))
    if mag > 1e14:
        return ts / 1e9
    if mag > 1e11:
        return ts / 1e3
    return ts


def _num(v: str) -> float:
    v = v.strip()
    return float(v) if v else math.nan


# other spellings of the time column seen in recordings (pandas exports, loggers)
TS_ALIASES = ("ts", "timestamp", "time", "t")


def read_survey(path: Path) -> Survey:
    """Read a survey or track CSV. Tolerant of what exporters add or drop: an index
    column, a heading column, a differently named time column, header names in another
    case, rows without a timestamp (dropped), and no header row at all (the columns are
    then inferred, see ``_infer_header``)."""
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SurveyError(str(path), f"unreadable: {err}") from err
    if not rows:
        raise SurveyError(str(path), "unreadable: empty file")
    if all(_is_number(c) for c in rows[0]):
        header = _infer_header(path, rows)
    else:
        header = [_column_name(h) for h in rows[0]]
        rows = rows[1:]
        ts_col = next((a for a in TS_ALIASES if a in header), None)
        if ts_col is not None and "ts" not in header:
            header[header.index(ts_col)] = "ts"
    for col in ("ts", "x", "y"):
        if col not in header:
            raise SurveyError(str(path), f"missing column {col!r}")
    rcols = [i for i, h in enumerate(header) if h.startswith(RSSI_PREFIX)]
    if not rcols:
        raise SurveyError(str(path), "no rssi_<anchor id> columns")
    it, ix, iy = header.index("ts"), header.index("x"), header.index("y")
    try:
        data = np.array(
            [
                [_cell(r, it), _cell(r, ix), _cell(r, iy)] + [_cell(r, i) for i in rcols]
                for r in rows
            ],
            dtype=np.float64,
        ).reshape(len(rows), 3 + len(rcols))
    except (ValueError, IndexError) as err:
        raise SurveyError(str(path), f"bad row: {err}") from err
    data = data[np.isfinite(data[:, 0])]
    ts = _seconds(data[:, 0])
    if len(ts) > 1 and np.any(np.diff(ts) < 0):
        raise SurveyError(str(path), "rows are not in time order")
    return Survey(
        ts=ts,
        xy=data[:, 1:3],
        rssi=data[:, 3:],
        anchor_ids=tuple(header[i][len(RSSI_PREFIX) :] for i in rcols),
    )


def _cell(row: list[str], i: int) -> float:
    # a row cut short by the exporter (trailing unheard anchors) reads as not heard
    return _num(row[i]) if i < len(row) else math.nan


def _column_name(h: str) -> str:
    """Header names compare in lower case, except the anchor id after ``rssi_``."""
    h = h.strip()
    low = h.lower()
    return RSSI_PREFIX + h[len(RSSI_PREFIX) :] if low.startswith(RSSI_PREFIX) else low


def _is_number(v: str) -> bool:
    v = v.strip()
    if not v:
        return True  # an empty cell: an unheard anchor, or pandas' unnamed index header
    try:
        float(v)
    except ValueError:
        return False
    return True


def _infer_header(path: Path, rows: list[list[str]]) -> list[str]:
    """Columns of a CSV without a header row, in calib2021's order: an optional integer
    index, ``ts`` (the first column of epoch-like magnitude), then ``x, y`` or
    ``x, heading, y``, then one RSSI column per anchor, named ``rssi_1..`` in order."""
    width = max(len(r) for r in rows)
    cols = [[_num(r[i]) if i < len(r) else math.nan for r in rows] for i in range(width)]
    it = next((i for i, c in enumerate(cols) if np.nanmedian(np.abs(np.asarray(c))) > 1e8), None)
    if it is None:
        raise SurveyError(str(path), "no header and no timestamp column")
    rest = cols[it + 1 :]
    # RSSI columns: the trailing run whose values are all dBm-like (below 0, at least
    # some empty or all under -20 dBm), which positions in metres and headings are not
    n_rssi = 0
    for c in reversed(rest):
        v = np.asarray(c)
        heard = v[np.isfinite(v)]
        if len(heard) and np.all(heard < 0) and (len(heard) < len(v) or np.all(heard < -20)):
            n_rssi += 1
        else:
            break
    n_pos = len(rest) - n_rssi
    if n_rssi == 0 or n_pos not in (2, 3):
        raise SurveyError(str(path), f"no header and {width} columns: cannot tell x, y, rssi apart")
    pos = ["x", "y"] if n_pos == 2 else ["x", "heading", "y"]
    return (
        [f"col{i}" for i in range(it)]
        + ["ts", *pos]
        + [f"{RSSI_PREFIX}{j + 1}" for j in range(n_rssi)]
    )


def write_survey(path: Path, survey: Survey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "x", "y", *(RSSI_PREFIX + a for a in survey.anchor_ids)])
        for t, (x, y), row in zip(survey.ts, survey.xy, survey.rssi, strict=True):
            w.writerow(
                [
                    f"{t:.3f}",
                    f"{x:.4f}",
                    f"{y:.4f}",
                    *("" if math.isnan(v) else f"{v:.2f}" for v in row),
                ]
            )


def read_anchors(path: Path) -> dict[str, tuple[float, float, float]]:
    try:
        with path.open(newline="") as fh:
            return {
                r["id"].strip(): (float(r["x"]), float(r["y"]), float(r.get("z") or 0.0))
                for r in csv.DictReader(fh)
            }
    except (OSError, KeyError, ValueError, AttributeError) as err:
        raise SurveyError(str(path), f"not an anchors CSV (id,x,y,z): {err}") from err


def convert_calib2021(src: Path, out: Path) -> list[Path]:
    """Split the dataset's ``calibration_df.csv`` (all four tracks, in the flat's frame)
    into one survey CSV per recorded track, and copy ``anchors.csv`` and ``layout.csv``.

    The per-track ``calibN_df.csv`` files are in each run's own SLAM frame and name the
    anchors by hardware id, so they are not used; the tracks are told apart in the merged
    file by its pandas index restarting at each track.
    """
    path = src / "calibration_df.csv"
    merged = read_survey(path)
    try:
        with path.open(newline="") as fh:
            index = [int(float(r[0])) for r in list(csv.reader(fh))[1:] if r]
    except (OSError, ValueError, IndexError) as err:
        raise SurveyError(str(path), f"no leading index column: {err}") from err
    starts = [0] + [i for i in range(1, len(index)) if index[i] < index[i - 1]] + [len(index)]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (a, b) in enumerate(itertools.pairwise(starts), start=1):
        p = out / f"calib{n}.csv"
        write_survey(p, merged.slice(a, b))
        written.append(p)
    for name in ("anchors.csv", "layout.csv"):
        shutil.copyfile(src / name, out / name)
        written.append(out / name)
    return written
