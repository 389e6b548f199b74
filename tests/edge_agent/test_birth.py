"""The birth fits its declared bounds by construction; a device state over them is
refused at the edge, counted, and the device stays known as refused (decision 0024)."""

from __future__ import annotations

import pytest

from edge_agent.drivers.base import DeviceConfig, DriverError
from edge_agent.localbus.registry import DeviceRegistry
from edge_agent.metrics import AgentMetrics
from edge_agent.uplink.birth import build_birth
from protocols import DEFAULT_MAX_PAYLOAD, decode, encode
from protocols.codec import decode_state
from protocols.messages import (
    BIRTH_MAX_BYTES,
    BIRTH_MAX_DEVICES,
    DEVICE_TEXT_MAX,
    Birth,
    DeviceInfo,
    DeviceState,
)

HEAD = Birth(bd_seq=7, ts=1, agent_version="v" * 64, shadow_version=2**40, outbox_depth=2**40)
# The worst a device entry can be: longest ids, and model / fw of characters JSON
# escapes to six bytes each ("\u0001").
WORST_TEXT = "\x01" * DEVICE_TEXT_MAX


def _worst(i: int) -> DeviceInfo:
    return DeviceInfo(device_id=f"{i:064d}", kind="k" * 64, online=False, model=WORST_TEXT,
                      fw=WORST_TEXT, last_seen=10**14, refused="r" * 64)


def test_the_bound_is_within_ingest_cap() -> None:
    assert BIRTH_MAX_BYTES <= DEFAULT_MAX_PAYLOAD


def test_worst_case_devices_fill_the_bytes_and_the_rest_are_left_out() -> None:
    devices = [_worst(i) for i in range(400)]
    birth, left_out = build_birth(HEAD, devices)
    raw = encode(birth)
    assert len(raw) <= BIRTH_MAX_BYTES
    assert len(raw) + len(encode(devices[len(birth.devices)])) > BIRTH_MAX_BYTES  # full
    assert 0 < len(birth.devices) < 400
    # The devices past the bound are the last ones, in the order given (by id).
    assert left_out == [d.device_id for d in devices[len(birth.devices):]]
    assert decode_state(raw, max_bytes=BIRTH_MAX_BYTES) == birth  # ingest takes it


def test_small_devices_stop_at_the_count() -> None:
    devices = [DeviceInfo(device_id=f"d{i}", kind="esl") for i in range(BIRTH_MAX_DEVICES + 5)]
    birth, left_out = build_birth(HEAD, devices)
    assert len(birth.devices) == BIRTH_MAX_DEVICES
    assert left_out == [f"d{i}" for i in range(BIRTH_MAX_DEVICES, BIRTH_MAX_DEVICES + 5)]
    assert len(encode(birth)) <= BIRTH_MAX_BYTES


def test_everything_fits_when_it_fits() -> None:
    devices = [DeviceInfo(device_id=f"d{i}", kind="pos", model="m1", fw="1.0") for i in range(3)]
    birth, left_out = build_birth(HEAD, devices)
    assert (birth.devices, left_out) == (devices, [])
    assert birth.model_copy(update={"devices": []}) == HEAD


def test_ingest_refuses_a_birth_over_a_field_bound() -> None:
    doc = encode(HEAD).replace(b'"devices":[]',
                               b'"devices":[{"device_id":"a","kind":"b","model":"'
                               + b"m" * (DEVICE_TEXT_MAX + 1) + b'"}]')
    with pytest.raises(Exception, match="invalid_field"):
        decode(doc, Birth)


def _registry() -> tuple[DeviceRegistry, AgentMetrics, list[int]]:
    metrics = AgentMetrics()
    changes: list[int] = []
    return DeviceRegistry(metrics=metrics, on_change=lambda: changes.append(1)), metrics, changes


def _refused_count(metrics: AgentMetrics) -> float:
    return metrics.registry.get_sample_value(
        "storefleet_agent_bad_payloads_total",
        {"source": "local", "reason": "state_too_large"}) or 0.0


def test_an_oversized_state_is_refused_counted_and_the_device_stays_known() -> None:
    registry, metrics, changes = _registry()
    registry.update_state("pos", "till-1", DeviceState(online=True, model="m1", fw="1"),
                          now_ms=1)
    big = DeviceState(online=True, model="m" * 150_000)
    registry.update_state("pos", "till-1", big, now_ms=2)
    registry.update_state("pos", "till-2", DeviceState(online=True, fw="f" * 65), now_ms=2)
    assert _refused_count(metrics) == 2
    assert registry.refused() == {"till-1": "state_too_large", "till-2": "state_too_large"}
    info = {d.device_id: d for d in registry.snapshot()}
    # Known, nothing of the refused state kept (a new device is not taken as online).
    assert (info["till-1"].model, info["till-1"].fw, info["till-1"].online) == (None, None, True)
    assert (info["till-2"].online, info["till-2"].refused) == (False, "state_too_large")
    assert len(changes) == 3  # each a rebirth: the birth names the refusal
    # The same state again (a retained redelivery) is counted, but is no change.
    registry.update_state("pos", "till-1", big, now_ms=3)
    assert (_refused_count(metrics), len(changes)) == (3, 3)
    # A good state later is taken, and clears the refusal.
    registry.update_state("pos", "till-1", DeviceState(online=True, model="m2"), now_ms=4)
    assert registry.refused() == {"till-2": "state_too_large"}
    assert [d.model for d in registry.snapshot() if d.device_id == "till-1"] == ["m2"]
    assert len(changes) == 4


def test_a_configured_model_is_bounded_like_a_devices() -> None:
    with pytest.raises(DriverError, match="model longer than 64"):
        DeviceConfig.from_dict({"id": "P1", "family": "printer", "model": "x" * 65})
    assert DeviceConfig("P1", "printer", model="x" * 64).model == "x" * 64
