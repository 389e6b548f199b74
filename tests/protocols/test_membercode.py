"""The signed, rotating member code (protocols.membercode, decision 0064)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import membercode as mc

SECRET = b"chain-secret-for-tests-0123456789"
ANNA = "0193a1b2-0000-7000-8000-000000000001"
BEN = "0193a1b2-0000-7000-8000-000000000002"
# 2026-12-02 12:00:00 UTC, in the middle of a step
NOW = 1_796_212_800_000 + 12_345


def keys_for(*members: str) -> mc.KeyLookup:
    table = {(m, d): mc.day_key(SECRET, m, day=d)
             for m in members for d in range(mc.day_of(NOW) - 2, mc.day_of(NOW) + 3)}
    return lambda member, day: table.get((member, day))


def code_at(ms: int, member: str = ANNA) -> str:
    return mc.make(mc.day_key(SECRET, member, day=mc.day_of(ms)), member, now_ms=ms)


def refused(text: str, *, now_ms: int = NOW, guard: mc.ReplayGuard | None = None,
            legacy: bool = False) -> str:
    with pytest.raises(mc.CodeRefused) as err:
        mc.verify(text, keys=keys_for(ANNA, BEN), now_ms=now_ms,
                  guard=guard or mc.ReplayGuard(), legacy=legacy)
    assert err.value.reason in mc.REASONS
    return err.value.reason


def test_a_fresh_code_is_accepted_for_its_member() -> None:
    text = code_at(NOW)
    assert text.startswith(f"SFM2.{ANNA}.{mc.step_of(NOW)}.")
    assert len(text) < 80  # a small QR
    code = mc.verify(text, keys=keys_for(ANNA), now_ms=NOW, guard=mc.ReplayGuard())
    assert (code.member_id, code.step, code.legacy) == (ANNA, mc.step_of(NOW), False)


def test_the_code_rotates_every_step() -> None:
    assert code_at(NOW) != code_at(NOW + mc.STEP_MS)
    assert code_at(NOW) == code_at(NOW + 1)  # same step, same code


@pytest.mark.parametrize(("late", "reason"), [
    # the scanner's step minus the code's step: one either way is accepted (the end of
    # the shown code's life; 30 s of clock skew), two is not
    (0, None), (1, None), (-1, None), (2, "expired"), (-2, "not_yet_valid"),
])
@pytest.mark.parametrize("edge", ["first_ms", "last_ms"])
def test_clock_skew_at_step_edges(late: int, reason: str | None, edge: str) -> None:
    base = (NOW // mc.STEP_MS) * mc.STEP_MS  # the first ms of the code's step
    # the code made at one edge of its step, scanned at the opposite edge of the other
    made = base + (mc.STEP_MS - 1 if edge == "last_ms" else 0)
    at = base + late * mc.STEP_MS + (0 if edge == "last_ms" else mc.STEP_MS - 1)
    text = code_at(made)
    if reason is None:
        code = mc.verify(text, keys=keys_for(ANNA), now_ms=at, guard=mc.ReplayGuard())
        assert code.member_id == ANNA
    else:
        assert refused(text, now_ms=at) == reason


def test_exactly_at_the_window_edge() -> None:
    step = mc.step_of(NOW)
    text = code_at(NOW)
    last_ok = (step + 2) * mc.STEP_MS - 1  # the last ms of the following step
    assert mc.verify(text, keys=keys_for(ANNA), now_ms=last_ok,
                     guard=mc.ReplayGuard()).member_id == ANNA
    assert refused(text, now_ms=last_ok + 1) == "expired"


def test_a_code_across_midnight_uses_its_own_days_key() -> None:
    midnight = (mc.day_of(NOW) + 1) * mc.DAY_MS
    text = code_at(midnight - 1)  # the last step of the day, yesterday's key
    code = mc.verify(text, keys=keys_for(ANNA), now_ms=midnight + 1_000,
                     guard=mc.ReplayGuard())
    assert code.member_id == ANNA


def test_forged_codes_are_refused() -> None:
    text = code_at(NOW)
    prefix, member, step, mac = text.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    assert refused(f"{prefix}.{member}.{step}.{flipped}") == "forged"
    # Anna's mac on Ben's id
    assert refused(f"{prefix}.{BEN}.{step}.{mac}") == "forged"
    # a key for another day (a phone keeping yesterday's key) does not sign today
    stale = mc.make(mc.day_key(SECRET, ANNA, day=mc.day_of(NOW) - 1), ANNA, now_ms=NOW)
    assert refused(stale) == "forged"
    # signed with another chain's secret
    other = mc.make(mc.day_key(b"x" * 32, ANNA, day=mc.day_of(NOW)), ANNA, now_ms=NOW)
    assert refused(other) == "forged"


def test_a_member_without_keys_is_unknown() -> None:
    stranger = "0193a1b2-0000-7000-8000-00000000beef"
    assert refused(code_at(NOW, stranger)) == "unknown_member"


def test_a_replayed_code_is_refused_and_a_forgery_does_not_burn_the_step() -> None:
    guard = mc.ReplayGuard()
    text = code_at(NOW)
    forged = text[:-3] + ("AAA" if not text.endswith("AAA") else "BBB")
    assert refused(forged, guard=guard) == "forged"
    assert mc.verify(text, keys=keys_for(ANNA), now_ms=NOW, guard=guard).member_id == ANNA
    assert refused(text, now_ms=NOW + 5_000, guard=guard) == "replayed"
    # the next step's code is a new code
    nxt = code_at(NOW + mc.STEP_MS)
    assert mc.verify(nxt, keys=keys_for(ANNA), now_ms=NOW + mc.STEP_MS,
                     guard=guard).step == mc.step_of(NOW) + 1
    # another member's code in the same step is not a replay
    assert mc.verify(code_at(NOW, BEN), keys=keys_for(BEN), now_ms=NOW,
                     guard=guard).member_id == BEN


def test_the_guard_forgets_what_has_expired() -> None:
    guard = mc.ReplayGuard()
    for i in range(10):
        at = NOW + i * mc.STEP_MS
        mc.verify(code_at(at), keys=keys_for(ANNA), now_ms=at, guard=guard)
    assert len(guard) <= 2 * mc.WINDOW + 1


@pytest.mark.parametrize("text", [
    "", "SFM2", "SFM2...", "SFM2.a.b.c", f"SFM2.{ANNA}.12x.AAAA", f"SFM2.{ANNA}.1.AAAA",
    f"SFM3.{ANNA}.1.AAAAAAAAAAAAAAAA", f"SFM2.{ANNA}.1.!!!!!!!!!!!!!!!!",
    "SFM2.bad id.1.AAAAAAAAAAAAAAAA", "SFM:", "SFM:has space", "x" * 5000,
])
def test_malformed_codes(text: str) -> None:
    assert refused(text) == "malformed"


def test_legacy_codes_only_where_configured() -> None:
    assert refused("SFM:M0001") == "legacy_disabled"
    code = mc.verify("SFM:M0001", keys=keys_for(), now_ms=NOW, guard=mc.ReplayGuard(),
                     legacy=True)
    assert (code.member_id, code.legacy) == ("M0001", True)


def test_day_keys_are_per_member_per_day() -> None:
    day = mc.day_of(NOW)
    keys = {mc.day_key(SECRET, m, day=d) for m in (ANNA, BEN) for d in (day, day + 1)}
    assert len(keys) == 4
    assert mc.decode_key(mc.encode_key(mc.day_key(SECRET, ANNA, day=day))) == \
        mc.day_key(SECRET, ANNA, day=day)
    with pytest.raises(ValueError):
        mc.day_key(b"short", ANNA, day=day)
    with pytest.raises(ValueError):
        mc.decode_key("AAAA")


@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_a_refusal(text: str) -> None:
    try:
        mc.parse(text)
    except mc.CodeRefused as err:
        assert err.reason == "malformed"
