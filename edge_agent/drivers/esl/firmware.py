"""Firmware update of an ESL access point over the local bus (decision 0039).

Chunked, windowed, acknowledged and resumable: ``FwBegin`` names the image and the AP
answers the offset it already holds (0 for a new update); chunks go out up to
``fw_window`` ahead of the last acked offset; no progress within ``fw_ack_timeout_s``
sends again from the acked offset (go-back-N), ``fw_max_stalls`` of those in a row
fail the update. The job (update id, image path, version, sha256) is saved under
``<data_dir>/firmware/<device>.json`` before the first byte goes out, so after an
agent restart or a driver restart ``resume_saved()`` picks it up and the AP's ack
to the repeated ``FwBegin`` says where to go on: the bytes already acked are never
sent again. ``FwCommit`` makes the AP verify the sha256 and reboot into the image, or
keep its old firmware (``bad_image``). The outcome is one ``firmware_update`` event.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveFloat

from edge_agent.drivers.base import CommandRejected, DriverContext, DriverOptions
from edge_agent.drivers.firmware import (
    FirmwareUpdate,
    UpdateState,
    emit_outcome,
    firmware_metrics,
    image_path,
    read_image,
)
from protocols import encode
from protocols.errors import StorefleetError
from protocols.esl import FW_CHUNK_MAX, FwAck, FwBegin, FwChunk, FwCommit, FwResult
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

Publish = Callable[[bytes], Awaitable[None]]


class EslFirmwareOptions(DriverOptions):
    # 4 KiB of image is about 5.5 KiB of JSON: small enough for the AP's bus buffers.
    fw_chunk_size: int = Field(4096, gt=0, le=FW_CHUNK_MAX)
    fw_window: int = Field(4, ge=1, le=64)  # chunks in flight before an ack must come
    fw_ack_timeout_s: PositiveFloat = 5.0  # no progress for this long: send again
    fw_max_stalls: int = Field(5, ge=1)  # timeouts in a row before the update fails


@dataclass(frozen=True, slots=True)
class SavedJob:
    update_id: str
    path: str
    version: str
    sha256: str
    size: int
    from_version: str | None


class UpdateFailed(Exception):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class EslFirmware:
    """The update path of one access point; the driver feeds it the AP's ``up/fw``."""

    def __init__(self, *, device_id: str, ctx: DriverContext, options: EslFirmwareOptions,
                 publish: Publish) -> None:
        self.device_id = device_id
        self.ctx = ctx
        self.options = options
        self._publish = publish
        self.state = UpdateState()
        self.running_version: str | None = None
        self._metrics = firmware_metrics(ctx.registry)
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._job: SavedJob | None = None
        self._acked = -1  # the AP's highest next_offset for the current job; -1: none yet
        self._result: FwResult | None = None
        self._signal = asyncio.Event()
        self._file = (ctx.data_dir / "firmware" / f"{device_id}.json"
                      if ctx.data_dir is not None else None)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- starting -----------------------------------------------------------------------

    async def start(self, args: FirmwareUpdate) -> dict[str, Any]:
        """Run one update to its end (the command waits for the outcome)."""
        if self.busy:
            raise CommandRejected(self.device_id, "a firmware update is already running",
                                  reason="busy")
        if args.sha256 is None:
            raise CommandRejected(self.device_id, "the access point verifies the image by "
                                  "its sha256: give it", field="sha256", reason="bad_argument")
        path = image_path(self.device_id, self.ctx, args.path)
        job = SavedJob(update_id=uuid7(self.ctx.clock.now_ms()), path=str(path),
                       version=args.version, sha256=args.sha256, size=path.stat().st_size,
                       from_version=self.running_version)
        await self._save(job)
        return await asyncio.shield(self._spawn(job))

    def resume_saved(self) -> None:
        """After a restart: go on with a saved, unfinished job (from the AP's offset)."""
        if self.busy or self._file is None or not self._file.is_file():
            return
        try:
            job = SavedJob(**json.loads(self._file.read_text()))
        except (OSError, ValueError, TypeError) as err:
            self._metrics.updates.labels(family="esl", outcome="bad_saved_job").inc()
            logger.warning("esl %s: saved firmware job unreadable, dropped: %s",
                           self.device_id, err)
            self._file.unlink(missing_ok=True)
            return
        logger.info("esl %s: resuming firmware update %s to %s", self.device_id,
                    job.update_id, job.version)
        self._spawn(job)

    def _spawn(self, job: SavedJob) -> asyncio.Task[dict[str, Any]]:
        self._task = asyncio.create_task(self._run(job), name=f"esl-fw-{self.device_id}")
        return self._task

    async def aclose(self) -> None:
        """Stop a running transfer; its saved job stays, to be resumed."""
        task, self._task = self._task, None
        # Cancelled until it ends: the bus client's publish awaits its PUBACK with
        # asyncio.wait_for, which on 3.11 can swallow a cancellation racing the PUBACK.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled():
            task.exception()  # retrieved (``_run`` reports its own errors)

    # ---- messages from the AP ----------------------------------------------------------

    def on_up(self, msg: FwAck | FwResult) -> bool:
        """An ``up/fw`` message; False when it belongs to no running update."""
        if self._job is None or msg.update_id != self._job.update_id:
            return False
        if isinstance(msg, FwAck):
            self._acked = max(self._acked, msg.next_offset)
        else:
            self._result = msg
        self._signal.set()
        return True

    async def _send_msg(self, payload: bytes) -> None:
        """Publish; a bus that is down (an agent just starting, a broker restart) counts
        as a message lost: the ack timeout sends it again, ``fw_max_stalls`` bound it."""
        try:
            await self._publish(payload)
        except StorefleetError as err:
            self._metrics.resent.labels(family="esl", device=self.device_id).inc()
            logger.info("esl %s: firmware message not sent (%s); retrying after %s s",
                        self.device_id, err, self.options.fw_ack_timeout_s)

    async def _wait(self, done: Callable[[], bool]) -> bool:
        """Until ``done()`` or a result, or False after ``fw_ack_timeout_s`` without."""
        try:
            async with asyncio.timeout(self.options.fw_ack_timeout_s):
                while not done() and self._result is None:
                    self._signal.clear()
                    await self._signal.wait()
        except TimeoutError:
            return False
        return True

    # ---- the transfer ------------------------------------------------------------------

    async def _run(self, job: SavedJob) -> dict[str, Any]:
        self._job, self._acked, self._result = job, -1, None
        self.state = UpdateState("transferring", job.update_id, job.version, 0, job.size)
        resumed_from = 0
        runs = job.from_version  # what the AP runs after this update, by its own word
        try:
            image = await read_image(Path(job.path))
            if len(image) != job.size:
                raise UpdateFailed("failed", f"image changed size ({len(image)} bytes)")
            resumed_from = await self._begin(job)
            await self._send(job, image)
            result = await self._commit(job)
            self.running_version = runs = result.fw_version
            self.state.outcome, self.state.detail = result.outcome, result.detail
            self.state.state = "done" if result.outcome == "ok" else "failed"
        except UpdateFailed as err:
            self.state.state, self.state.outcome, self.state.detail = (
                "failed", err.outcome, err.detail)
        except OSError as err:
            self.state.state, self.state.outcome, self.state.detail = (
                "failed", "failed", f"image unreadable: {err}")
        except Exception as err:  # a bug: reported as a failed update, never left hanging
            logger.exception("esl %s: firmware update %s crashed", self.device_id,
                             job.update_id)
            self.state.state, self.state.outcome, self.state.detail = (
                "failed", "failed", f"driver error: {err!r}")
        await emit_outcome(self.ctx, device_id=self.device_id, family="esl", st=self.state,
                           from_version=job.from_version,
                           extra={"resumed_from": resumed_from})
        await self._forget()
        self._job = None
        return {"update_id": job.update_id, "outcome": self.state.outcome,
                "version": runs, "detail": self.state.detail,
                "resumed_from": resumed_from}

    async def _begin(self, job: SavedJob) -> int:
        begin = FwBegin(update_id=job.update_id, version=job.version, size=job.size,
                        sha256=job.sha256, chunk_size=self.options.fw_chunk_size)
        for _ in range(self.options.fw_max_stalls):
            await self._send_msg(encode(begin))
            if await self._wait(lambda: self._acked >= 0):
                self._check_result()
                return self._acked
        raise UpdateFailed("failed", "the access point did not answer the update's begin")

    async def _send(self, job: SavedJob, image: bytes) -> None:
        o = self.options
        acked = sent = self._acked
        stalls = 0
        while acked < job.size:
            while sent < job.size and sent - acked < o.fw_window * o.fw_chunk_size:
                n = min(o.fw_chunk_size, job.size - sent)
                await self._send_msg(encode(FwChunk.of(job.update_id, sent,
                                                       image[sent:sent + n])))
                sent += n
            if not await self._wait(functools.partial(self._acked_past, acked)):
                stalls += 1
                if stalls >= o.fw_max_stalls:
                    raise UpdateFailed("failed", f"no ack for {stalls} x "
                                       f"{o.fw_ack_timeout_s} s at offset {acked}")
                resent = -(-(sent - acked) // o.fw_chunk_size)
                self._metrics.resent.labels(family="esl", device=self.device_id).inc(resent)
                sent = acked  # go back to what the AP holds
                continue
            self._check_result()
            stalls = 0
            acked = self._acked
            sent = max(sent, acked)
            self.state.done_bytes = acked

    def _acked_past(self, offset: int) -> bool:
        return self._acked > offset

    async def _commit(self, job: SavedJob) -> FwResult:
        self.state.state = "verifying"
        for _ in range(self.options.fw_max_stalls):
            await self._send_msg(encode(FwCommit(update_id=job.update_id)))
            if await self._wait(lambda: False) and self._result is not None:
                return self._result
        raise UpdateFailed("failed", "the access point did not answer the commit")

    def _check_result(self) -> None:
        r = self._result
        if r is not None:  # a result before the commit: the AP lost or refused the update
            raise UpdateFailed(r.outcome, r.detail or "the access point ended the update")

    # ---- the saved job -----------------------------------------------------------------

    async def _save(self, job: SavedJob) -> None:
        if self._file is None:
            return
        file = self._file

        def write() -> None:  # file I/O off the event loop
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(job)))
            tmp.replace(file)  # atomic: a crash leaves the old job or the new one

        await asyncio.to_thread(write)

    async def _forget(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.unlink, missing_ok=True)
