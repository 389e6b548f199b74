"""Customer line display (2 x 20, ESC/POS display commands over serial).

Options (``DisplayOptions``): ``port`` (+ ``baudrate``), ``idle_text`` (shown after
(re)connecting when nothing else is). Capability: ``CustomerDisplay``. The display
never answers, so the link is watched for EOF/EIO (unplugged) while the driver waits;
``show()`` re-sends the last text after a reconnect so the customer never sees a stale
total.
"""

from __future__ import annotations

import logging

from pydantic import Field

from edge_agent.drivers.base import (
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    register,
)
from edge_agent.drivers.capabilities import CustomerDisplay
from edge_agent.drivers.links import ByteLink, SerialOptions, link_metrics, open_link
from protocols import linedisplay

logger = logging.getLogger(__name__)


class DisplayOptions(SerialOptions):
    idle_text: str = Field("Welcome", max_length=40)  # two lines of 20 at most


@register
class DisplayDriver(Driver, CustomerDisplay):
    family = "display"
    Options = DisplayOptions
    options: DisplayOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self._metrics = link_metrics(ctx.registry)
        self.shown: tuple[str, str] = (self.options.idle_text, "")
        self._link: ByteLink | None = None
        self._last_seen: int | None = None

    async def run(self) -> None:
        o = self.options
        link = await open_link(self.device_id, o, max_buffer=256)
        try:
            await link.write(bytes((linedisplay.ESC, 0x40)) + linedisplay.show_bytes(*self.shown))
            self._link = link
            self._last_seen = self.ctx.clock.now_ms()
            while True:  # a display sends nothing; anything it does send is noise
                data = await link.read()
                self._metrics.rejected.labels(device=self.device_id, reason="unexpected").inc(
                    len(data))
        finally:
            self._link = None
            await link.close()

    async def show(self, line1: str, line2: str = "") -> None:
        self.shown = (line1, line2)
        if self._link is None:
            raise DriverError(self.device_id, "display offline (text kept for reconnect)")
        await self._link.write(linedisplay.show_bytes(line1, line2))
        self._last_seen = self.ctx.clock.now_ms()

    def health(self) -> DeviceHealth:
        return DeviceHealth(online=self._link is not None, last_seen_ms=self._last_seen,
                            details={"text": list(self.shown)})
