"""The beacons one scanner hears: last seen, smoothed RSSI, battery from TLM, silence.

Keyed by advertised identity (``protocols.ble`` keys), never by MAC. Eddystone TLM
frames carry no identity, so a TLM is attached to the identity most recently heard
from the same address (how Eddystone beacons interleave UID and TLM frames); the
address map is bounded and only used for that.

Memory is bounded: at most ``max_beacons`` identities (installed ones always fit;
beyond the bound unknown beacons are not tracked, and counted by the caller).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from protocols.ble import EddystoneTLM, EddystoneUID, EddystoneURL, Frame, IBeacon

_RSSI_ALPHA = 0.3  # EWMA weight of a new RSSI sample: smooths multipath flicker, ~3 samples
_ADDRESS_MAP_MAX = 4096  # address -> identity entries kept for TLM attribution


@dataclass(slots=True)
class BeaconState:
    key: str
    installed: bool
    name: str | None = None
    last_seen_ms: int | None = None
    rssi: float | None = None
    power_1m: int | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    silent: bool = False  # alarm state: set once per transition

    def public(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "installed": self.installed,
            "last_seen_ms": self.last_seen_ms,
            "rssi": None if self.rssi is None else round(self.rssi, 1),
            "power_1m": self.power_1m,
            "battery_mv": self.battery_mv,
            "temperature_c": self.temperature_c,
            "silent": self.silent,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    key: str
    silent: bool  # True: went silent; False: heard again
    last_seen_ms: int | None


class BeaconInventory:
    def __init__(self, *, installed: Iterable[tuple[str, str | None]], max_beacons: int,
                 started_ms: int) -> None:
        self._max = max_beacons
        self._started_ms = started_ms
        self.beacons: dict[str, BeaconState] = {
            key: BeaconState(key=key, installed=True, name=name) for key, name in installed
        }
        self._by_address: OrderedDict[str, str] = OrderedDict()

    def observe(self, address: str, rssi: int, frame: Frame, *, now_ms: int) -> bool:
        """Take one frame; False when it was not tracked (inventory full / no identity)."""
        if isinstance(frame, EddystoneTLM):
            key = self._by_address.get(address)
            state = self.beacons.get(key) if key is not None else None
            if state is None:
                return False
            state.battery_mv = frame.battery_mv or None  # 0 = not supported
            state.temperature_c = frame.temperature_c
            state.last_seen_ms = now_ms
            return True
        if isinstance(frame, EddystoneURL):
            return False  # a URL beacon names a web page, not a place: not inventoried
        assert isinstance(frame, IBeacon | EddystoneUID)
        state = self.beacons.get(frame.key)
        if state is None:
            if len(self.beacons) >= self._max:
                return False
            state = self.beacons[frame.key] = BeaconState(key=frame.key, installed=False)
        state.last_seen_ms = now_ms
        state.power_1m = frame.power_1m
        state.rssi = rssi if state.rssi is None else (
            _RSSI_ALPHA * rssi + (1 - _RSSI_ALPHA) * state.rssi
        )
        self._by_address[address] = frame.key
        self._by_address.move_to_end(address)
        while len(self._by_address) > _ADDRESS_MAP_MAX:
            self._by_address.popitem(last=False)
        return True

    def check_silence(self, *, now_ms: int, silent_after_ms: int) -> list[Transition]:
        """Installed beacons that went silent, or came back, since the last check."""
        out: list[Transition] = []
        for state in self.beacons.values():
            if not state.installed:
                continue
            seen = state.last_seen_ms if state.last_seen_ms is not None else self._started_ms
            silent = now_ms - seen > silent_after_ms
            if silent != state.silent:
                state.silent = silent
                out.append(Transition(state.key, silent, state.last_seen_ms))
        return out

    def silent_keys(self) -> list[str]:
        return sorted(k for k, s in self.beacons.items() if s.silent)

    def last_seen_ms(self) -> int | None:
        seen = [s.last_seen_ms for s in self.beacons.values() if s.last_seen_ms is not None]
        return max(seen) if seen else None
