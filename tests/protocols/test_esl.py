"""ESL messages: typed errors naming the field, a content hash that ignores the version."""

from __future__ import annotations

import pytest

from protocols import DecodeError, decode, encode
from protocols.esl import LabelAck, LabelContent, LabelJob, PriceBook


def test_content_hash_is_stable_and_covers_what_the_label_shows() -> None:
    a = LabelContent(sku="A1", price_minor=199, currency="EUR", promo_text="2 for 3")
    assert a.content_hash() == LabelContent(sku="A1", price_minor=199, currency="EUR",
                                            promo_text="2 for 3").content_hash()
    assert len(a.content_hash()) == 16
    assert a.content_hash() != a.model_copy(update={"price_minor": 200}).content_hash()
    assert a.content_hash() != a.model_copy(update={"promo_text": None}).content_hash()


def test_job_round_trips() -> None:
    content = LabelContent(sku="A1", price_minor=199, currency="EUR", barcode="4006381333931")
    job = LabelJob(job_id="j1", label_id="L1", version=3, content=content,
                   content_hash=content.content_hash(), ts=1)
    assert decode(encode(job), LabelJob) == job


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b'{"label_id":"L1","content_hash":"0123456789abcdef","battery_pct":50,"ts":1}',
         "missing_field", "rssi_dbm"),
        (b'{"label_id":"L1","content_hash":"0123456789abcdef","battery_pct":150,'
         b'"rssi_dbm":-50,"ts":1}', "invalid_field", "battery_pct"),
        (b'{"label_id":"L1","content_hash":"short","battery_pct":50,"rssi_dbm":-50,"ts":1}',
         "invalid_field", "content_hash"),
        (b"\xff\xfe not json", "not_json", None),
    ],
)
def test_bad_acks_name_the_field(payload: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload, LabelAck)
    assert info.value.reason == reason
    assert info.value.field == field


def test_price_book_rejects_negative_prices() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b'{"version":1,"items":{"A1":{"price_minor":-1}}}', PriceBook)
    assert info.value.field == "items.A1.price_minor"
