"""Devices seen on the local bus, from their retained ``up/state`` (and any traffic).

A change of the device set or of a device's online flag calls ``on_change`` so the
uplink can publish a fresh birth (debounced there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.metrics import AgentMetrics
from protocols.messages import DeviceInfo, DeviceState

logger = logging.getLogger(__name__)

_MAX_DEVICES = 10_000  # Birth.devices max_length; a store has a few hundred


@dataclass(slots=True)
class _Device:
    kind: str
    online: bool
    model: str | None = None
    fw: str | None = None
    last_seen: int | None = None


class DeviceRegistry:
    def __init__(self, *, metrics: AgentMetrics, on_change: Callable[[], None]) -> None:
        self._metrics = metrics
        self._on_change = on_change
        self._devices: dict[str, _Device] = {}

    def update_state(self, kind: str, device_id: str, state: DeviceState, *, now_ms: int) -> None:
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
        changed = device.online != state.online or device.kind != kind
        device.kind = kind
        device.online = state.online
        device.model = state.model if state.model is not None else device.model
        device.fw = state.fw if state.fw is not None else device.fw
        device.last_seen = now_ms
        if changed:
            logger.info("device %s/%s online=%s", kind, device_id, state.online)
            self._changed()

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
            )
            for device_id, d in sorted(self._devices.items())
        ]

    def _changed(self) -> None:
        self._metrics.devices_online.set(self.online_count())
        self._on_change()
