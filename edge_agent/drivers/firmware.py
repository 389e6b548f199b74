"""What every family's ``firmware_update`` shares (decision 0039): the command's
arguments, the image read from the agent's data folder, the state shown in health and
the one outcome event.

The image is a file under the agent's data folder (the content-addressed artifact
cache, ``<data_dir>/cas/``, is where a rollout leaves it): a path outside it is refused,
so a command cannot send ``/etc/shadow`` to a cabinet. Each family's transfer lives in
its own folder (``esl/firmware.py``, ``vending/firmware.py``); the outcome of every
update becomes one ``firmware_update`` event through the outbox (it survives an
outage), with an id derived from the update so a retried emit is stored once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from edge_agent.drivers.base import CommandArgs, CommandRejected, DriverContext
from edge_agent.metrics import registry_scoped

logger = logging.getLogger(__name__)

# uuid5 namespace of firmware_update event ids (fixed: ids must be stable across restarts).
FIRMWARE_EVENT_NAMESPACE = uuid.UUID("6f1c2f5e-3d1b-4f0e-9a57-0d8c7b1f2e39")
# Device images are a few MiB; 64 MiB is a mistake (and what the ESL protocol caps).
IMAGE_MAX = 64 * 1024 * 1024

FwVersion = Annotated[str, Field(min_length=1, max_length=32,
                                 pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]


class FirmwareUpdate(CommandArgs):
    """Arguments of ``firmware_update``: the image file, the version it holds and,
    where known (the artifact's manifest), its sha256."""

    path: str = Field(min_length=1, max_length=4096)
    version: FwVersion
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


@dataclass(slots=True)
class UpdateState:
    """The ``update`` entry of a device's health: where its last update stands."""

    state: str = "idle"  # idle, transferring, verifying, rebooting, done, failed
    update_id: str | None = None
    version: str | None = None
    done_bytes: int = 0
    size: int = 0
    outcome: str | None = None  # ok, bad_image, incomplete, failed, fell_back
    detail: str = ""

    @property
    def busy(self) -> bool:
        return self.state in ("transferring", "verifying", "rebooting")

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


def image_path(device_id: str, ctx: DriverContext, raw: str) -> Path:
    """The image file, refused unless it is a regular file under the data folder."""
    if ctx.data_dir is None:
        raise CommandRejected(device_id, "firmware_update needs the agent's data folder",
                              reason="unavailable")
    root = ctx.data_dir.resolve()
    path = Path(raw)
    path = (path if path.is_absolute() else root / path).resolve()
    if not path.is_relative_to(root):
        raise CommandRejected(device_id, f"image {raw!r} is outside the data folder",
                              field="path", reason="bad_argument")
    if not path.is_file():
        raise CommandRejected(device_id, f"image {raw!r} not found", field="path",
                              reason="bad_argument")
    size = path.stat().st_size
    if not 0 < size <= IMAGE_MAX:
        raise CommandRejected(device_id, f"image of {size} bytes (1..{IMAGE_MAX})",
                              field="path", reason="bad_argument")
    return path


async def read_image(path: Path) -> bytes:
    # A file read blocks; images are small enough (IMAGE_MAX) to hold whole.
    return await asyncio.to_thread(path.read_bytes)


def event_id(store_id: str, device_id: str, update_id: str) -> str:
    return str(uuid.uuid5(FIRMWARE_EVENT_NAMESPACE, f"{store_id}/{device_id}/{update_id}"))


class FirmwareMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.updates = Counter(
            "storefleet_firmware_updates", "device firmware updates by family and outcome",
            ["family", "outcome"], registry=registry)
        self.resent = Counter(
            "storefleet_firmware_resent", "firmware chunks or blocks sent again (lost "
            "ack, bad CRC)", ["family", "device"], registry=registry)


def firmware_metrics(registry: CollectorRegistry) -> FirmwareMetrics:
    return registry_scoped(registry, "firmware", FirmwareMetrics)


async def emit_outcome(ctx: DriverContext, *, device_id: str, family: str, st: UpdateState,
                       from_version: str | None, extra: dict[str, Any] | None = None) -> None:
    """One ``firmware_update`` event per update (idempotent by the update id)."""
    assert st.update_id is not None
    data = {"family": family, "update_id": st.update_id, "version": st.version,
            "from_version": from_version, "outcome": st.outcome, "detail": st.detail,
            "size": st.size, **(extra or {})}
    firmware_metrics(ctx.registry).updates.labels(family=family, outcome=st.outcome).inc()
    await ctx.emit_event("firmware_update", device_id=device_id, data=data,
                         event_id=event_id(ctx.store_id, device_id, st.update_id))
    log = logger.info if st.outcome == "ok" else logger.warning
    log("%s: firmware %s -> %s: %s %s", device_id, from_version, st.version, st.outcome,
        st.detail)
