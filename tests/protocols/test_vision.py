"""Cart snapshot envelope: raw JPEG or JSON+base64, typed errors for everything else."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import DecodeError
from protocols.vision import (
    SNAPSHOT_MAX_JPEG,
    CategorySeen,
    decode_snapshot,
    encode_snapshot,
)

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9"


def test_raw_jpeg_passes_through() -> None:
    assert decode_snapshot(JPEG) == (JPEG, None)


def test_json_roundtrip_carries_metadata() -> None:
    payload = encode_snapshot(JPEG, snapshot_id="snap-1", ts=1_767_225_600_000, session_id="s1")
    jpeg, meta = decode_snapshot(payload)
    assert jpeg == JPEG
    assert meta is not None
    assert (meta.snapshot_id, meta.session_id, meta.ts) == ("snap-1", "s1", 1_767_225_600_000)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"[]", "invalid_field"),
        (json.dumps({"v": 1, "snapshot_id": "a", "ts": 1}).encode(), "missing_field"),
        (
            json.dumps({"v": 1, "snapshot_id": "a", "ts": 1, "jpeg_b64": "@@@@"}).encode(),
            "bad_base64",
        ),
        (
            json.dumps({"v": 1, "snapshot_id": "a", "ts": "1", "jpeg_b64": "AAAA"}).encode(),
            "invalid_field",
        ),
        (b"\xff\xd8" + b"\0" * SNAPSHOT_MAX_JPEG, "too_large"),
    ],
)
def test_bad_envelopes_raise_typed_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_snapshot(payload)
    assert err.value.reason == reason


def test_base64_of_oversize_jpeg_is_refused() -> None:
    big = base64.b64encode(b"\xff\xd8" + b"\0" * (SNAPSHOT_MAX_JPEG + 10)).decode()
    payload = json.dumps({"v": 1, "snapshot_id": "a", "ts": 1, "jpeg_b64": big}).encode()
    with pytest.raises(DecodeError) as err:
        decode_snapshot(payload)
    # refused by the field's length bound before any base64 is decoded (a refusal after
    # decoding would be too_large with no field)
    assert (err.value.reason, err.value.field) == ("invalid_field", "jpeg_b64")


@given(st.binary(max_size=512))
def test_garbage_never_escapes_as_another_error(payload: bytes) -> None:
    try:
        decode_snapshot(payload)
    except DecodeError:
        pass


def test_category_seen_bounds_confidence() -> None:
    with pytest.raises(ValueError):
        CategorySeen(id="x", source="C1", category="bread", confidence=1.5, ts=0, model="m")
