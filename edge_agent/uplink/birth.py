"""Build a birth that always fits the bounds declared in ``protocols.messages``.

A birth ingest cannot take stops the store's uplink: ingest never answers ``ready`` and
the outbox waits for ever (decision 0012). So the bound is kept by construction, not
checked after the fact:

* what a device says about itself is bounded per field (``DeviceInfo``'s model and fw,
  ``DEVICE_TEXT_MAX``); a state over it was already refused by the registry;
* entries are added in device-id order, each measured as it will be encoded, until
  ``BIRTH_MAX_DEVICES`` entries or ``BIRTH_MAX_BYTES`` bytes; the devices past either
  bound are left out, and the caller alarms on them.

    birth, left_out = build_birth(head, devices)   # len(encode(birth)) <= BIRTH_MAX_BYTES
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.codec import encode
from protocols.messages import BIRTH_MAX_BYTES, BIRTH_MAX_DEVICES, Birth, DeviceInfo


def build_birth(head: Birth, devices: Iterable[DeviceInfo]) -> tuple[Birth, list[str]]:
    """``head`` with as many of ``devices`` as fit; returns it and the ids left out.

    ``head`` carries every other field (its own ``devices`` are ignored)."""
    head = head.model_copy(update={"devices": []})
    size = len(encode(head))  # ends in "[]}" : each entry adds its bytes and a comma
    kept: list[DeviceInfo] = []
    left_out: list[str] = []
    for device in devices:
        entry = len(encode(device)) + (1 if kept else 0)
        if left_out or len(kept) >= BIRTH_MAX_DEVICES or size + entry > BIRTH_MAX_BYTES:
            left_out.append(device.device_id)  # past the bound: this one and all after it
            continue
        kept.append(device)
        size += entry
    return Birth.model_validate({**head.model_dump(), "devices": kept}), left_out
