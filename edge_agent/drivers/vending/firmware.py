"""Firmware update of the vending lock board over its serial protocol (decision 0039).

FW_START (size, version) -> the board's block size; FW_BLOCK n with the block's CRC-32
for every block, in order: ``BAD_CRC`` sends the block again (``fw_block_retries``
times at most), a lost reply is the link's usual retry with the same SEQ; FW_VERIFY
(the image's own CRC-32 and size: ``BAD_IMAGE`` leaves the old firmware running);
FW_REBOOT, then INFO until the board answers again (``fw_reboot_timeout_s``): it names
the new version, or the old one when the new image did not start (``fell_back``).
The driver stops polling the reader while an update runs, and refuses one while a
vend session is open; the board refuses FW_START then as well (error BUSY).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field, PositiveFloat

from edge_agent.drivers.base import CommandRejected, DriverContext, DriverError, DriverOptions
from edge_agent.drivers.firmware import (
    FirmwareUpdate,
    UpdateState,
    emit_outcome,
    firmware_metrics,
    image_path,
    read_image,
)
from edge_agent.drivers.links import LinkTimeout
from edge_agent.drivers.vending.transport import BoardError
from protocols import vending as v
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

Request = Callable[[v.Cmd, bytes], Awaitable[bytes]]


class VendingFirmwareOptions(DriverOptions):
    fw_block_retries: int = Field(5, ge=0)  # BAD_CRC answers to one block before giving up
    # A lock board restarts in a second or two; 10 s before it counts as not back.
    fw_reboot_timeout_s: PositiveFloat = 10.0


class UpdateFailed(Exception):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class VendingFirmware:
    def __init__(self, *, device_id: str, ctx: DriverContext,
                 options: VendingFirmwareOptions, request: Request) -> None:
        self.device_id = device_id
        self.ctx = ctx
        self.options = options
        self._request = request
        self._metrics = firmware_metrics(ctx.registry)
        self.state = UpdateState()
        self.running_version: str | None = None

    async def read_version(self) -> str | None:
        """The board's firmware version (INFO); None from a board that does not know INFO."""
        try:
            self.running_version = v.parse_version(await self._request(v.Cmd.INFO, b""))
        except BoardError as err:
            logger.info("%s: board does not report its firmware version (%s)",
                        self.device_id, err.detail)
        except v.VendingFrameError as err:
            self._metrics.updates.labels(family="vending", outcome="bad_info").inc()
            logger.warning("%s: bad INFO reply: %s", self.device_id, err)
        return self.running_version

    async def update(self, args: FirmwareUpdate) -> dict[str, Any]:
        if self.state.busy:
            raise CommandRejected(self.device_id, "a firmware update is already running",
                                  reason="busy")
        path = image_path(self.device_id, self.ctx, args.path)
        image = await read_image(path)
        from_version = self.running_version
        self.state = UpdateState("transferring", uuid7(self.ctx.clock.now_ms()),
                                 args.version, 0, len(image))
        try:
            block_size = await self._start(image, args)
            await self._send(image, block_size)
            await self._verify()
            runs = await self._reboot()
            self.running_version = runs
            if runs == args.version:
                self.state.state, self.state.outcome = "done", "ok"
            else:
                self.state.state, self.state.outcome = "failed", "fell_back"
                self.state.detail = f"the board came back on {runs}"
        except CommandRejected:
            self.state = UpdateState()
            raise
        except UpdateFailed as err:
            self.state.state, self.state.outcome, self.state.detail = (
                "failed", err.outcome, err.detail)
        except (DriverError, v.VendingFrameError) as err:
            self.state.state, self.state.outcome, self.state.detail = (
                "failed", "failed", str(err))
        await emit_outcome(self.ctx, device_id=self.device_id, family="vending",
                           st=self.state, from_version=from_version)
        return {"update_id": self.state.update_id, "outcome": self.state.outcome,
                "version": self.running_version, "detail": self.state.detail}

    async def _start(self, image: bytes, args: FirmwareUpdate) -> int:
        if args.sha256 is not None and hashlib.sha256(image).hexdigest() != args.sha256:
            raise UpdateFailed("bad_image", "the image's sha256 is not the one given; "
                               "nothing sent")
        try:
            reply = await self._request(v.Cmd.FW_START,
                                        v.fw_start_payload(len(image), args.version))
        except BoardError as err:
            if err.code == v.ErrorCode.BUSY:
                raise CommandRejected(self.device_id, "the board is busy (a vend session "
                                      "is open)", reason="busy") from err
            raise
        if len(reply) != 2 or not 0 < (size := int.from_bytes(reply, "big")) <= v.FW_BLOCK_MAX:
            raise UpdateFailed("failed", f"bad FW_START reply {reply.hex()}")
        if -(-len(image) // size) > 0xFFFF:  # block numbers are u16
            raise UpdateFailed("failed", f"image of {len(image)} bytes is too large for "
                               f"blocks of {size}")
        return size

    async def _send(self, image: bytes, block_size: int) -> None:
        for n, offset in enumerate(range(0, len(image), block_size)):
            data = image[offset:offset + block_size]
            for attempt in range(self.options.fw_block_retries + 1):
                if attempt:
                    self._metrics.resent.labels(family="vending", device=self.device_id).inc()
                echo, status = v.parse_fw_block_reply(
                    await self._request(v.Cmd.FW_BLOCK, v.fw_block_payload(n, data)))
                if echo != n:
                    raise UpdateFailed("failed", f"block {n} answered as block {echo}")
                if status is v.BlockStatus.OK:
                    break
                if status is not v.BlockStatus.BAD_CRC:
                    raise UpdateFailed("failed", f"block {n}: {status.name}")
                logger.info("%s: firmware block %d had a bad CRC at the board; sending "
                            "it again", self.device_id, n)
            else:
                raise UpdateFailed("failed", f"block {n}: bad CRC "
                                   f"{self.options.fw_block_retries + 1} times")
            self.state.done_bytes = offset + len(data)

    async def _verify(self) -> None:
        self.state.state = "verifying"
        result = v.parse_verify_reply(await self._request(v.Cmd.FW_VERIFY, b""))
        if result is v.VerifyResult.BAD_IMAGE:
            raise UpdateFailed("bad_image", "the board refused the image (its CRC-32 does "
                               f"not match); it keeps {self.running_version}")
        if result is not v.VerifyResult.OK:
            raise UpdateFailed("failed", f"verify: {result.name}")

    async def _reboot(self) -> str:
        self.state.state = "rebooting"
        reply = await self._request(v.Cmd.FW_REBOOT, b"")
        if reply != b"\x00":
            raise UpdateFailed("failed", "the board refused to reboot (nothing verified)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.fw_reboot_timeout_s
        while True:
            try:
                return v.parse_version(await self._request(v.Cmd.INFO, b""))
            except LinkTimeout:
                if loop.time() > deadline:
                    raise UpdateFailed("failed", "the board did not come back after "
                                       "its reboot") from None
