"""Devices seen on the local bus, from their retained ``up/state`` (and any traffic).

A change of the device set or of a device's online flag calls ``on_change`` so the
uplink can publish a fresh birth (debounced there).

A state naming a model or firmware longer than the birth allows
(``protocols.messages.DEVICE_TEXT_MAX``) is refused here, at the edge: counted
(``storefleet_agent_bad_payloads_total{source="local",reason="state_too_large"}``),
logged, and the device stays known as ``refused`` without what it said. Carried into
the birth, one such retained state made every birth too large for ingest (decision 0024).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.metrics import AgentMetrics
from protocols.messages import DEVICE_TEXT_MAX, DeviceInfo, DeviceState, device_text_fits

logger = logging.getLogger(__name__)

# Memory bound of the registry; the birth names at most BIRTH_MAX_DEVICES of them
# (edge_agent/uplink/birth.py leaves the rest out, with an alarm).
_MAX_DEVICES = 10_000
STATE_TOO_LARGE = "state_too_large"  # the bad_payloads reason and DeviceInfo.refused


@dataclass(slots=True)
class _Device:
    kind: str
    online: bool
    model: str | None = None
    fw: str | None = None
    last_seen: int | None = None
    refused: str | None = None  # why its last state was refused (None: taken)


class DeviceRegistry:
    def __init__(self, *, metrics: AgentMetrics, on_change: Callable[[], None]) -> None:
        self._metrics = metrics
        self._on_change = on_change
        self._devices: dict[str, _Device] = {}

    def update_state(self, kind: str, device_id: str, state: DeviceState, *, now_ms: int) -> None:
        if not device_text_fits(state.model, state.fw):
            self._refuse(kind, device_id, state, now_ms=now_ms)
            return
        device = self._devices.get(device_id)
        if device is None:
            if len(self._devices) >= _MAX_DEVICES:
                logger.warning("device registry full; ignoring %s/%s", kind, device_id)
                return
            self._devices[device_id] = _Device(
                kind=kind, online=state.online, model=state.model, fw=state.fw, last_seen=now_ms
            )
            logger.info("device %s/%s appeared (online=%s)", kind, device_id, state.online)
            self._changed()
            return
        changed = (device.online != state.online or device.kind != kind
                   or device.refused is not None)
        device.refused = None
        device.kind = kind
        device.online = state.online
        device.model = state.model if state.model is not None else device.model
        device.fw = state.fw if state.fw is not None else device.fw
        device.last_seen = now_ms
        if changed:
            logger.info("device %s/%s online=%s", kind, device_id, state.online)
            self._changed()

    def _refuse(self, kind: str, device_id: str, state: DeviceState, *, now_ms: int) -> None:
        """Keep the device known, take nothing of its state: not online, model, nor fw."""
        self._metrics.bad_payloads.labels(source="local", reason=STATE_TOO_LARGE).inc()
        logger.warning(
            "device %s/%s: state refused (%s): model %d, fw %d characters, at most %d",
            kind, device_id, STATE_TOO_LARGE, len(state.model or ""), len(state.fw or ""),
            DEVICE_TEXT_MAX,
        )
        device = self._devices.get(device_id)
        if device is None:
            if len(self._devices) >= _MAX_DEVICES:
                logger.warning("device registry full; ignoring %s/%s", kind, device_id)
                return
            device = self._devices[device_id] = _Device(kind=kind, online=False)
        elif device.refused == STATE_TOO_LARGE and device.kind == kind:
            device.last_seen = now_ms
            return  # refused again (a redelivered retained state): nothing new to tell
        device.kind = kind
        device.refused = STATE_TOO_LARGE
        device.model = device.fw = None
        device.last_seen = now_ms
        self._changed()

    def refused(self) -> dict[str, str]:
        """``{device_id: reason}`` of the devices whose last state was refused."""
        return {i: d.refused for i, d in sorted(self._devices.items()) if d.refused}

    def remove(self, device_id: str) -> None:
        if self._devices.pop(device_id, None) is not None:
            logger.info("device %s removed", device_id)
            self._changed()

    def seen(self, device_id: str, *, now_ms: int) -> None:
        device = self._devices.get(device_id)
        if device is not None:
            device.last_seen = now_ms

    def kind_of(self, device_id: str) -> str | None:
        device = self._devices.get(device_id)
        return None if device is None else device.kind

    def online_count(self) -> int:
        return sum(1 for d in self._devices.values() if d.online)

    def snapshot(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                device_id=device_id,
                kind=d.kind,
                online=d.online,
                model=d.model,
                fw=d.fw,
                last_seen=d.last_seen,
                refused=d.refused,
            )
            for device_id, d in sorted(self._devices.items())
        ]

    def _changed(self) -> None:
        self._metrics.devices_online.set(self.online_count())
        self._on_change()
