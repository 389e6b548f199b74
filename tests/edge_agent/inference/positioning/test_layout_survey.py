from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.inference.positioning.errors import SurveyError
from edge_agent.inference.positioning.layout import FloorPlan, Zone
from edge_agent.inference.positioning.survey import Survey, read_survey, write_survey

# a 10 x 6 m room with a 4 m shelf run (0.5 m deep) in the middle
PLAN = FloorPlan(
    outline=((0, 0), (10, 0), (10, 6), (0, 6)),
    obstacles=(((3, 2.75), (7, 2.75), (7, 3.25), (3, 3.25)),),
    zones=(Zone("south", (0, 0, 10, 2.75)), Zone("north", (0, 3.25, 10, 6))),
)


def test_free_space_and_walls() -> None:
    pts = np.array([[1.0, 1.0], [5.0, 3.0], [11.0, 1.0], [5.0, 5.0]])
    assert PLAN.free(pts).tolist() == [True, False, False, True]
    a = np.array([[5.0, 2.0], [1.0, 2.0], [9.5, 1.0]])
    b = np.array([[5.0, 4.0], [1.0, 4.0], [10.5, 1.0]])
    # through the shelf, round its end, through the outer wall
    assert PLAN.crosses_wall(a, b).tolist() == [True, False, True]
    assert PLAN.zone_at(5, 1) == "south" and PLAN.zone_at(5, 5) == "north"
    assert FloorPlan.from_json(PLAN.to_json()) == PLAN


def test_survey_roundtrip_and_units(tmp_path: Path) -> None:
    s = Survey(
        ts=np.array([1.0, 1.5]),
        xy=np.array([[1.0, 2.0], [1.1, 2.0]]),
        rssi=np.array([[-60.0, np.nan], [-61.0, -70.0]]),
        anchor_ids=("1", "b"),
    )
    write_survey(tmp_path / "s.csv", s)
    back = read_survey(tmp_path / "s.csv")
    assert back.anchor_ids == ("1", "b")
    np.testing.assert_allclose(back.rssi, s.rssi)
    # calib2021 style: leading index column, heading, nanosecond timestamps
    (tmp_path / "d.csv").write_text(
        ",ts,x,heading,y,rssi_1\n0,1.6e18,1.0,0.3,2.0,-50\n1,1.6000000005e18,1.1,0.3,2.1,\n"
    )
    d = read_survey(tmp_path / "d.csv")
    assert d.ts[1] - d.ts[0] == pytest.approx(0.5)
    assert d.xy[1].tolist() == [1.1, 2.1] and np.isnan(d.rssi[1, 0])


@pytest.mark.parametrize(
    "text",
    [
        # the same two rows as exporters write them: no index, no heading
        "ts,x,y,rssi_1,rssi_A2\n1.6e18,1.0,2.0,-50,-71\n1.6000000005e18,1.1,2.1,,-72\n",
        # another time column name, header in another case, a heading column
        "Timestamp,X,Heading,Y,RSSI_1,rssi_A2\n1.6e18,1.0,0.3,2.0,-50,-71\n"
        "1.6000000005e18,1.1,0.3,2.1,,-72\n",
        # a row with no timestamp is dropped; a row cut short reads as unheard
        ",ts,x,heading,y,rssi_1,rssi_A2\n0,1.6e18,1.0,0.3,2.0,-50,-71\n1,,5,5,5,-40,-40\n"
        "2,1.6000000005e18,1.1,0.3,2.1,,-72\n",
    ],
)
def test_track_reader_tolerates_exporter_variations(tmp_path: Path, text: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    t = read_survey(tmp_path / "t.csv")
    assert t.anchor_ids == ("1", "A2")
    assert t.ts[1] - t.ts[0] == pytest.approx(0.5)
    assert t.xy.tolist() == [[1.0, 2.0], [1.1, 2.1]]
    np.testing.assert_array_equal(t.rssi, [[-50.0, -71.0], [np.nan, -72.0]])


@pytest.mark.parametrize("index", [True, False])
@pytest.mark.parametrize("heading", [True, False])
def test_track_without_header_row_reads_in_calib2021_order(
    tmp_path: Path, index: bool, heading: bool
) -> None:
    lines = []
    for i, (ts, x, y, r1, r2) in enumerate(
        [("1.6e18", "1.0", "2.0", "-50", "-71.5"), ("1.6000000005e18", "1.1", "2.1", "", "-72")]
    ):
        cells = [str(i)] * index + [ts, x] + ["-2.5"] * heading + [y, r1, r2]
        lines.append(",".join(cells))
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    t = read_survey(tmp_path / "t.csv")
    assert t.anchor_ids == ("1", "2")
    assert t.xy.tolist() == [[1.0, 2.0], [1.1, 2.1]]
    np.testing.assert_array_equal(t.rssi, [[-50.0, -71.5], [np.nan, -72.0]])


@pytest.mark.parametrize(
    "text",
    [
        "1.6e18,1.0,2.0,3.0,4.0\n",  # no header, and no column reads as dBm
        "ts,x,rssi_1\n1,2,-50\n",
        "ts,x,y\n1,2,3\n",
        "ts,x,y,rssi_1\n2,0,0,-50\n1,0,0,-50\n",
        "ts,x,y,rssi_1\n1,zero,0,-50\n",
    ],
)
def test_bad_surveys_raise_typed_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(SurveyError):
        read_survey(tmp_path / "bad.csv")


def test_convert_calib2021_splits_four_tracks(calib2021: Path) -> None:
    sizes = [len(read_survey(calib2021 / f"calib{i}.csv")) for i in range(1, 5)]
    assert sum(sizes) == 4104 and len(sizes) == 4
    plan = FloorPlan.load(calib2021 / "layout.csv")
    pts = np.vstack([read_survey(calib2021 / f"calib{i}.csv").xy for i in range(1, 5)])
    # the robot drove inside the flat: nearly every ground-truth point is in free space
    assert plan.free(pts).mean() > 0.97
