"""A small store schedule used by the audio tests; its assets are real WAV files (PCM
16-bit mono at 4 kHz), each a tone of its own frequency as long as the track."""

from __future__ import annotations

import functools
import hashlib
import io
import wave
from typing import Any

import numpy as np

DAY = 86_400_000
MIDNIGHT = 1_767_225_600_000  # ManualClock's start: 2026-01-01T00:00Z


RATE = 4000  # Hz: every tone below is under its Nyquist frequency (2 kHz)
# A whole number of samples per period, so one period repeated is the whole track, and
# distinct frequencies are orthogonal over any whole number of the longest period (40 ms).
TONE_HZ = {"m1": 200, "m2": 250, "e1": 100, "open": 500, "close": 400, "promo": 800,
           "near": 1000, "xmas": 125}
AMPLITUDE = 0.5  # of full scale: music and voice mixed stay under clipping


@functools.cache
def asset(track_id: str) -> bytes:
    period = RATE // TONE_HZ[track_id]
    one = np.round(AMPLITUDE * 32767 * np.sin(2 * np.pi * np.arange(period) / period))
    samples = np.tile(one.astype("<i2"), TRACK_MS[track_id] * RATE // 1000 // period)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def sha(track_id: str) -> str:
    return hashlib.sha256(asset(track_id)).hexdigest()


TRACK_MS = {"m1": 180_000, "m2": 240_000, "e1": 200_000, "open": 30_000, "close": 45_000,
            "promo": 20_000, "near": 15_000, "xmas": 120_000}


def hhmm(h: int, m: int = 0, s: int = 0) -> int:
    return MIDNIGHT + (h * 3600 + m * 60 + s) * 1000


def schedule_doc(version: int = 1, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": version,
        "duck_db": -12.0,
        "tracks": {t: {"sha256": sha(t), "duration_ms": ms} for t, ms in TRACK_MS.items()},
        "zones": {"floor": {"volume_db": -6.0},
                  "aisle": {"volume_db": -3.0, "presence_sensors": ["P1"]}},
        "dayparts": [
            {"name": "day", "start": "08:00", "end": "18:00", "playlist": ["m1", "m2"]},
            {"name": "evening", "start": "18:00", "end": "22:00", "playlist": ["e1"],
             "zones": ["floor"], "gain_db": -2.0},
        ],
        "announcements": [
            {"name": "opening", "at": "08:00", "track_id": "open"},
            {"name": "closing", "at": "21:45", "track_id": "close", "priority": 200},
        ],
        "spots": [
            {"name": "promo", "track_id": "promo", "every_s": 900, "start": "09:00",
             "end": "17:00", "priority": 20, "zones": ["floor"]},
            {"name": "near", "track_id": "near", "trigger": "presence", "cooldown_s": 60,
             "zones": ["aisle"], "priority": 30},
        ],
    }
    doc.update(changes)
    return doc
