"""protocols.joincode: an assistant's signed join code; forged, edited, expired and
malformed codes refused with their reason, and nothing else raised on any input."""

from __future__ import annotations

import random

import pytest

from protocols import joincode
from protocols.joincode import JoinRefused

KEY = joincode.join_key(b"test-member-code-secret-0001")
NOW = 1_796_212_800_000


def make(store: str = "S001", assistant: str = "ann", expires_ms: int = NOW + 60_000) -> str:
    return joincode.make(KEY, store_id=store, assistant_id=assistant, expires_ms=expires_ms)


def refused(text: str, *, key: bytes = KEY, now_ms: int = NOW) -> str:
    with pytest.raises(JoinRefused) as err:
        joincode.verify(text, key=key, now_ms=now_ms)
    return err.value.reason


def test_a_code_names_its_store_and_assistant_until_it_expires() -> None:
    text = make("store.7", "ann-b:2", NOW + 60_500)  # ids may hold '.' and ':'
    code = joincode.verify(f"  {text}\n", key=KEY, now_ms=NOW)
    assert (code.store_id, code.assistant_id, code.expires_ms) == ("store.7", "ann-b:2",
                                                                   NOW + 60_000)
    assert joincode.verify(text, key=KEY, now_ms=NOW + 59_999).store_id == "store.7"
    assert refused(text, now_ms=NOW + 60_000) == "expired"
    assert len(make("s" * 64, "a" * 64)) < 256


def test_forged_and_edited_codes() -> None:
    text = make()
    head, payload, mac = text.split(".")
    assert refused(f"{head}.{payload}.{mac[::-1]}") == "forged"
    other = make("S002").split(".")[1]
    assert refused(f"{head}.{other}.{mac}") == "forged"  # another store's payload
    later = joincode.make(b"\0" * 32, store_id="S001", assistant_id="ann",
                          expires_ms=NOW + 10**9)
    assert refused(later) == "forged"  # another chain's key
    assert refused(text, key=joincode.join_key(b"another-chain-secret-01")) == "forged"
    with pytest.raises(ValueError):
        joincode.join_key(b"short")
    with pytest.raises(ValueError):
        joincode.make(KEY, store_id="S|1", assistant_id="ann", expires_ms=NOW)


@pytest.mark.parametrize("text", [
    "", "SFJ1", "SFJ1..", "SFJ2.abc.def", "SFM2.a.1.x", "SFJ1.abc.de!f",
    "SFJ1.abc.AAAA", "SFJ1." + "A" * 300 + ".AAAA", "SFJ1.\u00e9.AAAAAAAAAAAAAAAA"])
def test_malformed(text: str) -> None:
    assert refused(text) == "malformed"


def test_fuzz_never_raises_anything_else() -> None:
    rng = random.Random(17)
    good = make()
    alphabet = "SFJ1.|-_=+/AZaz09\u00ff\x00"
    for _ in range(3000):
        if rng.random() < 0.5:
            chars = list(good)
            for _ in range(rng.randint(1, 4)):
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            text = "".join(chars)
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        try:
            joincode.verify(text, key=KEY, now_ms=NOW)
        except JoinRefused as err:
            assert err.reason in joincode.REASONS
