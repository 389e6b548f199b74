"""A birth ingest does not store is listed for an explicit refusal, with the reason and,
when it can be read, the session (decision 0024); a stored birth is listed for ``ready``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from cloud.db import make_engine, make_session_factory, upgrade
from cloud.db.engine import writer
from cloud.ingest.batch import BatchProcessor, RefusedBirth
from protocols import encode, topics
from protocols.clock import ManualClock
from protocols.messages import BIRTH_MAX_BYTES, Birth, DeviceInfo


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _processor(engine: Engine, max_payload: int = 256 * 1024) -> BatchProcessor:
    return BatchProcessor(make_session_factory(writer(engine)), clock=ManualClock(),
                          max_payload=max_payload)


def _birth(bd_seq: int, **over: object) -> Birth:
    return Birth.model_validate({"bd_seq": bd_seq, "ts": 1, "agent_version": "1.0", **over})


def test_a_birth_over_the_bound_is_refused_with_its_session(engine: Engine) -> None:
    # Older agents built births past BIRTH_MAX_BYTES (the report: 301,096 bytes).
    big = encode(_birth(41)).replace(
        b'"devices":[]', b'"devices":[' + b",".join(
            encode(DeviceInfo(device_id=f"d{i:05d}", kind="esl", model="m" * 60, fw="f" * 60))
            for i in range(1_000)) + b"]")
    assert BIRTH_MAX_BYTES < len(big) < 256 * 1024  # within ingest's cap, over the birth's
    result = _processor(engine).process([(topics.state("s1"), big),
                                         (topics.state("s2"), encode(_birth(3)))])
    assert [(r.store_id, r.bd_seq, r.reason) for r in result.refused] == [("s1", 41, "too_large")]
    assert result.births == [("s2", 3)]


def test_another_protocol_version_is_refused_as_unsupported(engine: Engine) -> None:
    raw = encode(_birth(5)).replace(b'"v":1', b'"v":2')
    result = _processor(engine).process([(topics.state("s1"), raw)])
    [refused] = result.refused
    assert (refused.store_id, refused.bd_seq, refused.reason) == ("s1", 5, "unsupported_version")
    assert "v" in refused.detail and result.births == []


def test_an_unreadable_state_is_refused_without_a_session(engine: Engine) -> None:
    result = _processor(engine).process([(topics.state("s1"), b"x" * 10),
                                         (topics.evt("s1", "sale"), b"not json")])
    assert [(r.store_id, r.bd_seq, r.reason) for r in result.refused] == [
        ("s1", None, "not_json")]  # an event is not a birth: rejected, nothing to answer


def test_a_birth_the_database_refuses_is_refused_not_ready(engine: Engine) -> None:
    # PostgreSQL stores no NUL in text; SQLite does (then the birth is simply stored).
    result = _processor(engine).process([(topics.state("s1"),
                                          encode(_birth(9, agent_version="1.0\x00")))])
    if engine.dialect.name == "postgresql":
        [refused] = result.refused
        assert (refused.store_id, refused.bd_seq, refused.reason) == ("s1", 9, "db_rejected")
        assert result.births == []
    else:
        assert (result.refused, result.births) == ([], [("s1", 9)])
    assert all(isinstance(r, RefusedBirth) for r in result.refused)
