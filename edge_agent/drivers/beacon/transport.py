"""How advertisements reach the beacon driver: ``BeaconScanner`` over a scan backend.

    scanner = BeaconScanner(on_advert, backend=Backend.BLEAK, adapter="hci0")
    scanner = BeaconScanner(on_advert, backend=Backend.REPLAY, recording=path, speed=0)
    scanner = BeaconScanner(on_advert, backend=my_backend)        # any ScanBackend
    await scanner.run()      # until cancelled; raises ScannerError when the radio fails

Backends (chosen from ``Backend``, imported lazily so that bleak and its D-Bus stack are
only loaded where a radio is used):

- ``bleak``: ``bleak.BleakScanner`` with a detection callback. On Linux/BlueZ the
  discovery filter ``DuplicateData=True`` is passed, which turns BlueZ's duplicate
  filtering off, so a beacon that keeps advertising the same bytes keeps producing
  callbacks (and RSSI) instead of one per discovery session. bleak hands us pre-parsed
  fields; they are turned back into AD structures (``protocols.ble.rebuild_advertisement``)
  so both backends feed the one parser.
- ``replay``: recorded advertisements, one JSON object per line
  ``{"t": seconds, "address": "AA:BB:..", "rssi": -61, "adv": "0201061aff..."}``,
  paced by ``t`` / ``speed`` (0 = as fast as possible), optionally looping, or
  ``follow`` (like ``tail -f``: a simulator appending live advertisements).

Errors: ``ScannerError`` (a ``DriverError``) for a backend that cannot start or dies.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge_agent.drivers.base import DriverError
from protocols.ble import rebuild_advertisement

logger = logging.getLogger(__name__)

_FOLLOW_POLL_S = 0.1  # follow mode: how often to look for new lines at EOF
_READ_CHUNK = 64 * 1024  # bytes of lines read per thread hop


class ScannerError(DriverError):
    """The scan backend could not start or stopped working."""


@dataclass(frozen=True, slots=True)
class RawAdvertisement:
    address: str
    rssi: int
    raw: bytes  # AD structures as received


AdvertCallback = Callable[[RawAdvertisement], None]
BadRecordCallback = Callable[[str], None]


class ScanBackend(Protocol):
    async def scan(self, on_advert: AdvertCallback) -> None:
        """Deliver advertisements until cancelled; raise ``ScannerError`` on failure."""
        ...


class Backend(enum.Enum):
    BLEAK = "bleak"
    REPLAY = "replay"


class BleakBackend:
    """Production backend: a real radio through bleak (BlueZ on the store box)."""

    def __init__(self, *, adapter: str | None = None, scanning_mode: str = "active",
                 device_id: str = "ble") -> None:
        self.adapter = adapter
        self.scanning_mode = scanning_mode
        self._device_id = device_id

    def scanner_kwargs(self) -> dict[str, Any]:
        """The BleakScanner keyword arguments (testable without a radio)."""
        bluez: dict[str, Any] = {"filters": {"DuplicateData": True}}
        if self.adapter:
            bluez["adapter"] = self.adapter
        return {"scanning_mode": self.scanning_mode, "bluez": bluez}

    @staticmethod
    def convert(device: Any, adv: Any) -> RawAdvertisement:
        """bleak's (BLEDevice, AdvertisementData) -> our raw advertisement."""
        raw = rebuild_advertisement(dict(adv.manufacturer_data), dict(adv.service_data))
        return RawAdvertisement(address=str(device.address), rssi=int(adv.rssi), raw=raw)

    async def scan(self, on_advert: AdvertCallback) -> None:
        from bleak import BleakScanner  # lazy: D-Bus/CoreBluetooth only where used
        from bleak.exc import BleakError

        def detected(device: Any, adv: Any) -> None:
            on_advert(self.convert(device, adv))

        try:
            async with BleakScanner(detection_callback=detected, **self.scanner_kwargs()):
                await asyncio.Event().wait()  # scanning runs in bleak's callbacks
        except BleakError as err:
            raise ScannerError(self._device_id, f"BLE scanner: {err}") from err
        except OSError as err:  # no D-Bus / no adapter on this box
            raise ScannerError(self._device_id, f"BLE scanner unavailable: {err}") from err


class ReplayBackend:
    """Recorded (or simulated, followed live) advertisements from a JSONL file."""

    def __init__(self, recording: Path, *, speed: float = 1.0, loop: bool = False,
                 follow: bool = False, on_bad_record: BadRecordCallback | None = None,
                 device_id: str = "ble") -> None:
        self.recording = Path(recording)
        self.speed = speed
        self.loop = loop
        self.follow = follow
        self._on_bad = on_bad_record
        self._device_id = device_id
        self.delivered = 0

    async def scan(self, on_advert: AdvertCallback) -> None:
        while True:
            await self._pass(on_advert)
            if not self.loop:
                await asyncio.Event().wait()  # recording over: stay "scanning", hear nothing
            await asyncio.sleep(0)

    async def _pass(self, on_advert: AdvertCallback) -> None:
        try:
            # File I/O in a thread: a slow disk must not stall the event loop.
            handle = await asyncio.to_thread(self.recording.open, "rb")
        except OSError as err:
            raise ScannerError(self._device_id, f"cannot open recording: {err}") from err
        loop = asyncio.get_running_loop()
        started, first_t = loop.time(), None
        pending = b""
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, _READ_CHUNK)
                if not chunk:
                    if not self.follow:
                        return
                    await asyncio.sleep(_FOLLOW_POLL_S)
                    continue
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()  # a partial last line waits for the rest
                for line in lines:
                    record = self._record(line)
                    if record is None:
                        continue
                    t, advert = record
                    if self.speed > 0 and not self.follow:
                        first_t = t if first_t is None else first_t
                        delay = started + (t - first_t) / self.speed - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    self.delivered += 1
                    on_advert(advert)
                if self.speed <= 0:
                    await asyncio.sleep(0)  # a fast replay still lets others run
        finally:
            handle.close()

    def _record(self, line: bytes) -> tuple[float, RawAdvertisement] | None:
        if not line.strip():
            return None
        try:
            doc = json.loads(line)
            advert = RawAdvertisement(
                address=str(doc["address"]), rssi=int(doc["rssi"]), raw=bytes.fromhex(doc["adv"])
            )
            return float(doc.get("t", 0.0)), advert
        except (ValueError, KeyError, TypeError) as err:
            if self._on_bad is not None:
                self._on_bad(f"{type(err).__name__}: {err}")
            return None


class BeaconScanner:
    """One public class over one backend interface (bleak style)."""

    def __init__(self, on_advert: AdvertCallback, *, backend: Backend | ScanBackend,
                 device_id: str = "ble", **options: Any) -> None:
        self._on_advert = on_advert
        self.backend: ScanBackend = (
            _make_backend(backend, device_id=device_id, **options)
            if isinstance(backend, Backend)
            else backend
        )

    async def run(self) -> None:
        await self.backend.scan(self._on_advert)


def _make_backend(kind: Backend, *, device_id: str, **options: Any) -> ScanBackend:
    if kind is Backend.BLEAK:
        return BleakBackend(adapter=options.get("adapter"),
                            scanning_mode=str(options.get("scanning_mode", "active")),
                            device_id=device_id)
    recording = options.get("recording")
    if not recording:
        raise ScannerError(device_id, "replay backend needs a recording path")
    return ReplayBackend(Path(recording), speed=float(options.get("speed", 1.0)),
                         loop=bool(options.get("loop", False)),
                         follow=bool(options.get("follow", False)),
                         on_bad_record=options.get("on_bad_record"), device_id=device_id)
