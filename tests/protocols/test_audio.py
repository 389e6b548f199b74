"""Audio schedule documents are checked as a whole: references, times, spot rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocols import DecodeError, decode, encode
from protocols.audio import AudioOutput, AudioSchedule, Layer, ZoneOutput
from tests.edge_agent.drivers.audio.fixtures import schedule_doc, sha


def test_schedule_round_trips() -> None:
    schedule = decode(json.dumps(schedule_doc()), AudioSchedule)
    assert decode(encode(schedule), AudioSchedule) == schedule


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"announcements": [{"name": "x", "at": "08:00", "track_id": "nope"}]}, "unknown track"),
        ({"announcements": [{"name": "x", "at": "8am", "track_id": "open"}]}, "HH:MM"),
        ({"spots": [{"name": "x", "track_id": "promo"}]}, "every_s"),
        ({"dayparts": [{"name": "d", "start": "08:00", "end": "09:00", "playlist": ["m1"],
                        "zones": ["roof"]}]}, "unknown zones"),
        ({"duck_db": 3.0}, "duck_db"),
    ],
)
def test_bad_schedules_are_rejected_with_the_reason(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(json.dumps(schedule_doc(**change)), AudioSchedule)
    assert needle in str(info.value)


def test_output_rejects_a_bad_hash() -> None:
    layer = Layer(track_id="m1", sha256=sha("m1"), kind="music", item="day", started_ms=0,
                  gain_db=-6.0)
    msg = AudioOutput(seq=1, ts=0, zones=[ZoneOutput(zone="floor", music=layer)])
    raw = encode(msg).replace(sha("m1").encode(), b"f" * 63)
    with pytest.raises(DecodeError) as info:
        decode(raw, AudioOutput)
    assert info.value.field == "zones.0.music.sha256"
