"""The ESL access-point driver: labels converge to the store's price book.

One driver per access point (family ``esl``, bus kind ``esl_ap``). A price book
(``set_price_book`` / command or desired-shadow key ``esl_price_book``) becomes one
``LabelJob`` per label whose content changed; the AP keeps the latest job per label
until the label checks in and acknowledges. Unacknowledged jobs are retried with
backoff, all of them at once when the AP reports a new ``boot_id`` (it restarted and
forgot its queue). Labels not converged within ``stale_after_s`` raise the
``esl_stale`` alarm: in ``health()`` and as a ``device_alarm`` event on each edge.

Options (``EslOptions``): ``labels`` {label id: sku}, ``retry_s``, ``retry_max_s``,
``stale_after_s``, ``max_labels``, ``tick_s``, ``offline_after_s``, ``max_msgs_per_s``.
Desired key (decision 0037): ``esl_price_book`` (a ``PriceBook``).
Commands: ``esl_price_book`` (alias ``set_price_book``; arguments: ``PriceBook``),
``bind_labels``, ``unbind_labels``, ``esl_status``, ``resend``, ``firmware_update``
(``esl/firmware.py``, decision 0039). Capability: ``LabelSink``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field, PositiveFloat, ValidationError

from edge_agent.drivers.base import (
    CommandArgs,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverOptions,
    command,
    desired,
    first_error,
    register,
)
from edge_agent.drivers.capabilities import BusyReporter, LabelCounter, LabelSink
from edge_agent.drivers.esl.firmware import EslFirmware, EslFirmwareOptions
from edge_agent.drivers.esl.labels import AckResult, LabelBook, LabelBookError
from edge_agent.drivers.esl.metrics import esl_metrics
from edge_agent.drivers.firmware import FirmwareUpdate
from edge_agent.drivers.links import TokenBucket
from protocols import decode, encode, topics
from protocols.errors import ProtocolError
from protocols.esl import (
    ACK,
    DEVICE_KIND,
    FW,
    JOB,
    STATUS,
    ApStatus,
    FwUp,
    LabelAck,
    LabelJob,
    PriceBook,
    PriceBookItem,
)

logger = logging.getLogger(__name__)

STALE_ALARM = "esl_stale"
# Acks and statuses are small; 16 KiB is generous and stops a garbage blob early.
MAX_MESSAGE_BYTES = 16 * 1024
# A label whose battery is below this is reported, so a tech can swap it before it dies.
LOW_BATTERY_PCT = 15.0
# Labels listed by name in an alarm event; the count says how many there are in all.
ALARM_LIST_MAX = 50


class EslOptions(EslFirmwareOptions, DriverOptions):
    labels: dict[str, str] = Field(default_factory=dict)  # label id -> sku
    retry_s: PositiveFloat = 120.0  # first retry of an unacknowledged job
    retry_max_s: PositiveFloat = 1800.0
    # Real labels check in about every 40 s; 15 min covers missed check-ins and
    # a retry or two before a shelf price counts as wrong.
    stale_after_s: PositiveFloat = 900.0
    max_labels: int = Field(20_000, gt=0)
    tick_s: PositiveFloat = 1.0
    # The AP sends a status every 60 s; three missed ones means it is gone.
    offline_after_s: PositiveFloat = 180.0
    max_msgs_per_s: PositiveFloat = 500.0


class BindLabels(CommandArgs):
    labels: dict[str, str]  # label id -> sku


class UnbindLabels(CommandArgs):
    labels: list[str]


@register
class EslDriver(Driver, LabelSink, BusyReporter, LabelCounter):
    family = "esl"
    Options = EslOptions
    options: EslOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        opts = self.options
        self.book = LabelBook(retry_s=opts.retry_s, retry_max_s=opts.retry_max_s,
                              stale_after_s=opts.stale_after_s, max_labels=opts.max_labels)
        self.tick_s = opts.tick_s
        self.offline_after_ms = int(opts.offline_after_s * 1000)
        rate = opts.max_msgs_per_s
        self._bucket = TokenBucket(rate=rate, burst=rate * 4, clock=ctx.clock)
        self.metrics = esl_metrics(ctx.registry)
        self._outbox: dict[str, LabelJob] = {}  # label id -> latest job: bounded by labels
        self._wake = asyncio.Event()
        self._subscribed = False
        self._boot_id: str | None = None
        self.last_seen_ms: int | None = None
        self._alarm_active = False
        self.bind_labels(opts.labels)
        self.firmware = EslFirmware(device_id=self.device_id, ctx=ctx, options=opts,
                                    publish=self._publish_fw)

    # ---- public API -------------------------------------------------------------------

    def set_price_book(
        self, version: int, items: Mapping[str, Any], *, currency: str = "EUR"
    ) -> dict[str, Any]:
        """Apply a price book (sku -> {price_minor, promo_text?, barcode?, currency?}).

        Only labels whose shown content changes get a job. An older or equal version
        is ignored (desired state is delivered at least once, maybe twice)."""
        try:
            book = PriceBook.model_validate(
                {"version": version, "currency": currency, "items": dict(items)}
            )
        except ValidationError as err:
            where, msg = first_error(err)
            raise CommandRejected(self.device_id, f"bad price book at {where}: {msg}",
                                  field=where, reason="bad_argument") from err
        return self.apply_price_book(book)

    def apply_price_book(self, book: PriceBook) -> dict[str, Any]:
        jobs = self.book.set_price_book(book, now_ms=self.ctx.clock.now_ms())
        if jobs is None:
            current = self.book.book.version if self.book.book else 0
            return {"applied": False, "version": current, "jobs": 0}
        self._queue(jobs)
        self.metrics.price_book.labels(device_id=self.device_id).set(book.version)
        logger.info("esl %s: price book v%d, %d label(s) to update",
                    self.device_id, book.version, len(jobs))
        return {"applied": True, "version": book.version, "jobs": len(jobs)}

    def bind_labels(self, bindings: Mapping[str, str]) -> int:
        try:
            jobs = self.book.bind(bindings, now_ms=self.ctx.clock.now_ms())
        except LabelBookError as err:
            raise CommandRejected(self.device_id, str(err)) from err
        self._queue(jobs)
        return len(jobs)

    @command("esl_price_book", PriceBook)
    @command("set_price_book", PriceBook)
    async def _price_book(self, args: PriceBook) -> dict[str, Any]:
        return self.apply_price_book(args)

    @desired("esl_price_book", PriceBook)
    async def _desired_price_book(self, book: PriceBook) -> PriceBook | None:
        """The desired shadow's price book; the book in effect is what is reported (a
        newer one sent as a command stays, and the shadow shows the difference)."""
        self.apply_price_book(book)
        return self.book.book

    @command("bind_labels", BindLabels)
    async def _bind(self, args: BindLabels) -> dict[str, Any]:
        return {"jobs": self.bind_labels(args.labels)}

    def label_counts(self) -> tuple[int, int, int]:
        counts = self.book.counts(now_ms=self.ctx.clock.now_ms())
        return counts.acked, counts.pending, counts.stale

    @command("unbind_labels", UnbindLabels)
    async def _unbind(self, args: UnbindLabels) -> dict[str, Any]:
        return {"removed": self.book.unbind(args.labels)}

    @command("esl_status")
    async def _cmd_status(self, args: Any) -> dict[str, Any]:
        now = self.ctx.clock.now_ms()
        counts = self.book.counts(now_ms=now)
        return {"pending": counts.pending, "acked": counts.acked, "stale": counts.stale,
                "stale_labels": self.book.stale(now_ms=now)[:ALARM_LIST_MAX]}

    @command("firmware_update", FirmwareUpdate)
    async def _firmware_update(self, args: FirmwareUpdate) -> dict[str, Any]:
        # A reboot drops the AP's queued label jobs (they are resent after it), so an
        # update waits until a price book has reached the shelf; stale labels, which
        # may never check in, do not hold it back (decision 0039).
        pending = self.book.counts(now_ms=self.ctx.clock.now_ms()).pending
        if pending:
            raise CommandRejected(self.device_id, f"a price book is still reaching the "
                                  f"shelf ({pending} label(s) pending)", reason="busy")
        return await self.firmware.start(args)

    def busy_reason(self) -> str | None:
        """A rollout defers while the AP is flashed or a price book is reaching the
        shelf (the same rule ``firmware_update`` refuses by)."""
        if self.firmware.busy:
            return "a firmware update is running"
        pending = self.book.counts(now_ms=self.ctx.clock.now_ms()).pending
        if pending:
            return f"a price book is still reaching the shelf ({pending} label(s) pending)"
        return None

    async def _publish_fw(self, payload: bytes) -> None:
        topic = topics.local(DEVICE_KIND, self.device_id, "down", FW)
        await self.ctx.publish_local(topic, payload, qos=1)

    @command("resend")
    async def _resend(self, args: Any) -> dict[str, Any]:
        jobs = self.book.resend_all(now_ms=self.ctx.clock.now_ms())
        self._queue(jobs)
        return {"jobs": len(jobs)}

    # ---- run loop -------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Listen to this AP's messages (once: run() is called again after a restart)."""
        if not self._subscribed:
            self.ctx.on_local(DEVICE_KIND, self._on_local)
            self._subscribed = True

    async def run(self) -> None:
        self.subscribe()
        self.firmware.resume_saved()
        try:
            while True:
                await self.tick()
                self._wake.clear()
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                    # cancellation that races with completion (the task then never stops).
                    async with asyncio.timeout(self.tick_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self.firmware.aclose()  # its saved job is resumed by the next run

    async def tick(self) -> None:
        """Send queued and due jobs, update alarms and gauges (the clock decides what is due)."""
        now = self.ctx.clock.now_ms()
        self._queue(self.book.due(now_ms=now), retry=True)
        await self._flush()
        await self._update_alarm(now)
        counts = self.book.counts(now_ms=now)
        for state, n in (("pending", counts.pending), ("acked", counts.acked),
                         ("stale", counts.stale)):
            self.metrics.labels.labels(device_id=self.device_id, state=state).set(n)

    def _queue(self, jobs: list[LabelJob], *, retry: bool = False) -> None:
        for job in jobs:
            self._outbox[job.label_id] = job
        if jobs:
            self.metrics.jobs.labels(device_id=self.device_id,
                                     kind="retry" if retry else "new").inc(len(jobs))
            self._wake.set()

    async def _flush(self) -> None:
        topic = topics.local(DEVICE_KIND, self.device_id, "down", JOB)
        while self._outbox:
            label_id = next(iter(self._outbox))
            job = self._outbox[label_id]
            # Publish before forgetting: if the bus is down this raises, the job stays
            # queued and the supervisor restarts the driver.
            await self.ctx.publish_local(topic, encode(job), qos=1)
            if self._outbox.get(label_id) is job:
                del self._outbox[label_id]

    async def _update_alarm(self, now: int) -> None:
        stale = self.book.stale(now_ms=now)
        if bool(stale) == self._alarm_active:
            return
        self._alarm_active = bool(stale)
        await self.ctx.emit_event(
            "device_alarm",
            device_id=self.device_id,
            data={
                "alarm": STALE_ALARM,
                "active": self._alarm_active,
                "count": len(stale),
                "labels": stale[:ALARM_LIST_MAX],
                "price_book_version": self.book.book.version if self.book.book else None,
                "stale_after_s": self.book.stale_after_ms / 1000,
            },
        )
        log = logger.warning if self._alarm_active else logger.info
        log("esl %s: %s %s (%d label(s))", self.device_id, STALE_ALARM,
            "raised" if self._alarm_active else "cleared", len(stale))

    # ---- messages from the access point ---------------------------------------------------

    async def _on_local(self, device_id: str, type_: str, payload: bytes) -> None:
        if device_id != self.device_id:
            return  # another access point's driver handles it
        if not self._bucket.take():
            self._bad("flood")
            return
        try:
            if type_ == ACK:
                self._on_ack(decode(payload, LabelAck, max_bytes=MAX_MESSAGE_BYTES))
            elif type_ == STATUS:
                self._on_status(decode(payload, ApStatus, max_bytes=MAX_MESSAGE_BYTES))
            elif type_ == FW:
                if not self.firmware.on_up(decode(payload, FwUp,
                                                  max_bytes=MAX_MESSAGE_BYTES).root):
                    self._bad("unknown_update")
            else:
                self._bad("unknown_type")
        except ProtocolError as err:
            self._bad(getattr(err, "reason", "invalid"))
            logger.debug("esl %s: bad %s message: %s", self.device_id, type_, err)

    def _bad(self, reason: str) -> None:
        self.metrics.bad.labels(device_id=self.device_id, reason=reason).inc()

    def _on_ack(self, ack: LabelAck) -> None:
        self.last_seen_ms = self.ctx.clock.now_ms()
        result = self.book.on_ack(ack)
        self.metrics.acks.labels(device_id=self.device_id, result=result.value).inc()
        if result is AckResult.UNKNOWN:
            self._bad("unknown_label")

    def _on_status(self, status: ApStatus) -> None:
        self.last_seen_ms = self.ctx.clock.now_ms()
        if status.fw_version is not None:
            self.firmware.running_version = status.fw_version
        if self._boot_id is not None and status.boot_id != self._boot_id:
            jobs = self.book.resend_all(now_ms=self.ctx.clock.now_ms())
            logger.info("esl %s: access point restarted; resending %d job(s)",
                        self.device_id, len(jobs))
            self._queue(jobs, retry=True)
        self._boot_id = status.boot_id

    # ---- health ------------------------------------------------------------------------------

    def health(self) -> DeviceHealth:
        now = self.ctx.clock.now_ms()
        counts = self.book.counts(now_ms=now)
        batteries = [s.battery_pct for s in self.book.labels.values() if s.battery_pct is not None]
        online = self.last_seen_ms is not None and now - self.last_seen_ms <= self.offline_after_ms
        return DeviceHealth(
            online=online,
            last_seen_ms=self.last_seen_ms,
            alarms=(STALE_ALARM,) if counts.stale else (),
            details={
                "labels": len(self.book.labels),
                "labels_pending": counts.pending,
                "labels_acked": counts.acked,
                "labels_stale": counts.stale,
                "price_book_version": self.book.book.version if self.book.book else None,
                "labels_low_battery": sum(b < LOW_BATTERY_PCT for b in batteries),
                "min_battery_pct": min(batteries) if batteries else None,
                "firmware_version": self.firmware.running_version,
                "update": self.firmware.state.snapshot(),
            },
        )


__all__ = ["EslDriver", "PriceBookItem"]
