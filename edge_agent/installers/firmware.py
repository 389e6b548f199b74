"""Device firmware (decision 0039): the driver of the device flashes the cached image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.drivers.base import CommandRejected, DriverError
from edge_agent.drivers.capabilities import BUSY
from edge_agent.installers import Offer
from protocols.messages import RolloutStep

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel

logger = logging.getLogger(__name__)


class FirmwareInstaller:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def refuse(self, offer: Offer) -> str | None:
        if offer.device == "agent":
            return "a firmware artifact needs a device"
        return None

    def busy(self, offer: Offer) -> str | None:
        """The device's own busy signal (``BusyReporter``: a vend session, a price book
        reaching the shelf); a family without one is never busy. A device that is offline
        (a board rebooting, a cable pulled) cannot take it now either: it waits, until
        the offer's deadline, like a busy one."""
        health = self.kernel.drivers.health().get(offer.device)
        if health is not None and not health.get("online"):
            return "the device is offline"
        for device in self.kernel.drivers.find(BUSY):
            if device.device_id == offer.device:
                return device.busy_reason()
        return None

    async def install(self, offer: Offer, path: Path) -> tuple[RolloutStep, str]:
        try:
            result = await self.kernel.drivers.command(
                offer.device, "firmware_update",
                {"path": str(path), "version": offer.version, "sha256": offer.sha256})
        except CommandRejected as err:
            if err.reason in ("busy", "offline"):  # it changed after busy() said free
                # (a vend began, the board dropped off): nothing was sent; wait again
                return "deferred", f"busy: {err.detail}"
            logger.warning("rollout %s: %s refused the firmware: %s", offer.rollout_id,
                           offer.device, err)
            return "failed", f"refused: {err}"
        except DriverError as err:  # counted by the driver supervisor
            logger.warning("rollout %s: %s refused the firmware: %s", offer.rollout_id,
                           offer.device, err)
            return "failed", f"refused: {err}"
        outcome = str(result.get("outcome"))
        if outcome == "ok":
            return "succeeded", f"version {offer.version}"
        return "failed", f"{outcome}: {result.get('detail') or ''}".strip()
