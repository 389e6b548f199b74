"""Vending cabinet driver: lock board + cashless reader on one serial line.

Options (``[[agent.devices]] options``, checked by ``VendingOptions``)::

    port = "/dev/serial/by-id/usb-cabinet-1"   # or a pty path in tests
    baudrate = 9600
    poll_interval_s = 0.2        # how often the reader is polled (MDB polls every ~0.2 s)
    reply_timeout_s = 0.5
    status_every = 10            # read door bitmap + temperature every N polls
    max_temperature_c = 8.0      # above this: ``temperature_high`` alarm
    [options.doors.0]            # planogram: door -> item number, price (minor units), sku
    item = 101
    price = 250
    sku = "COLA-330"

The driver polls the reader and runs the cashless session (``protocols.mdb``): a
selection becomes a vend request; an approval releases the door, and the door state
is always read back before the vend is declared a success. Every settled vend emits
exactly one ``vend`` event whose id is derived from the session id (a retried emit is
stored once).

Codes (decision 0066): a code entered or scanned at the cabinet (``CODE_ENTERED``) goes
to the desk the ``cabinets`` module attached (``vending/desk.py``). A pickup code opens
its one door (read back, the result told to the desk); a member code makes the next
vend within ``MEMBER_WINDOW_MS`` the member's. With a desk, every vend is priced by the
engine (the cabinet's promotions, the member if any) and its ``vend`` event carries the
sale's fields; doors held for pickups are not sold.

Commands: ``unlock`` {door: 0..15} (sensitive: only with a reason, decision 0044),
``status``, ``firmware_update`` (``vending/firmware.py``, decision 0039; refused while
a vend session is open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.drivers.base import (
    CommandArgs,
    CommandRejected,
    DeviceConfig,
    DeviceHealth,
    Driver,
    DriverContext,
    DriverError,
    command,
    register,
)
from edge_agent.drivers.capabilities import BusyReporter
from edge_agent.drivers.firmware import FirmwareUpdate
from edge_agent.drivers.links import SerialOptions, link_metrics, open_link
from edge_agent.drivers.vending.desk import (
    CabinetDesk,
    CodeRefused,
    MemberHere,
    OpenDoor,
    VendItem,
)
from edge_agent.drivers.vending.firmware import VendingFirmware, VendingFirmwareOptions
from edge_agent.drivers.vending.transport import BoardClient
from edge_agent.metrics import registry_scoped
from pricing import Member
from protocols import mdb
from protocols import vending as v
from protocols.ids import uuid7

logger = logging.getLogger(__name__)

UNLOCK_SETTLE_S = 0.05  # a latch needs a few ms to release before the door sensor reads open
# A member code counts for the cabinet's next vend within this long: the member shows the
# code, then taps a card and presses a key, as at a till; then it is forgotten.
MEMBER_WINDOW_MS = 60_000


# The lock board addresses 16 doors (one status bitmap of 16 bits).
Door = Annotated[int, Field(ge=0, lt=16)]


class Slot(BaseModel):
    """One door of the planogram: the item number the reader is told, its price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: int = Field(ge=0, lt=65536)  # two bytes on the wire (VEND_REQUEST)
    price: int = Field(ge=0)  # minor units
    sku: str | None = None
    best_before_ms: int | None = Field(None, ge=0)  # near-expiry markdowns (decision 0066)


class VendingOptions(VendingFirmwareOptions, SerialOptions):
    poll_interval_s: float = Field(0.2, gt=0)  # MDB readers are polled about every 0.2 s
    reply_timeout_s: float = Field(0.5, gt=0)
    status_every: int = Field(10, ge=1)  # read door bitmap + temperature every N polls
    max_temperature_c: float = 8.0  # above this: ``temperature_high`` alarm
    doors: dict[Door, Slot] = Field(default_factory=dict)


class Unlock(CommandArgs):
    door: Door


@register
class VendingDriver(Driver, BusyReporter):
    family = "vending"
    Options = VendingOptions
    options: VendingOptions

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        super().__init__(config, ctx)
        self._planogram: dict[int, Slot] = dict(self.options.doors)
        self._metrics = link_metrics(ctx.registry)
        self._vends = _vend_counter(ctx)
        self._board: BoardClient | None = None
        self._session = mdb.Session()
        self._emitted: set[str] = set()  # session ids whose vend event is committed
        self._online = False
        self._last_seen: int | None = None
        self._status: v.CabinetStatus | None = None
        self._jammed: set[int] = set()
        self._codes = _code_counter(ctx)
        self._desk: CabinetDesk | None = None
        self._member: tuple[Member, int] | None = None  # and until when (ms)
        self._sale: tuple[str, dict[str, Any]] | None = None  # session id, sale fields
        self.firmware = VendingFirmware(device_id=self.device_id, ctx=ctx,
                                        options=self.options, request=self._request)

    # ---- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        o = self.options
        link = await open_link(self.device_id, o)
        self._board = BoardClient(link, device_id=self.device_id, metrics=self._metrics,
                                  timeout_s=o.reply_timeout_s)
        try:
            await self._read_status()
            await self.firmware.read_version()
            n = 0
            while True:
                if self.firmware.state.busy:  # the board is in its bootloader
                    await asyncio.sleep(o.poll_interval_s)
                    continue
                await self._poll_once()
                n += 1
                if n % o.status_every == 0:
                    await self._read_status()
                await asyncio.sleep(o.poll_interval_s)
        finally:
            self._online = False
            self._board = None
            await link.close()

    async def _request(self, cmd: v.Cmd, payload: bytes = b"") -> bytes:
        if self._board is None:
            raise DriverError(self.device_id, "not connected")
        reply = await self._board.request(cmd, payload)
        self._online = True
        self._last_seen = self.ctx.clock.now_ms()
        return reply

    async def _read_status(self) -> v.CabinetStatus:
        status = v.CabinetStatus.decode(await self._request(v.Cmd.STATUS))
        self._status = status
        self.ctx.telemetry("vending", self.device_id, {
            "temperature_c": status.temperature_c, "open_doors": len(status.open_doors)})
        return status

    # ---- cashless session -----------------------------------------------------------------

    async def _poll_once(self) -> None:
        try:
            reply = v.PollReply.decode(await self._request(v.Cmd.POLL))
        except v.VendingFrameError as err:
            self._metrics.rejected.labels(device=self.device_id, reason=err.reason).inc()
            return
        try:
            await self._on_poll(reply)
        except mdb.SequenceError as err:
            self._metrics.rejected.labels(device=self.device_id, reason=err.reason).inc()
            logger.warning("%s: reader event %s out of sequence (%s)", self.device_id,
                           reply.event.name, err)

    async def _on_poll(self, reply: v.PollReply) -> None:
        ev = v.PollEvent
        s = self._session
        if reply.event is ev.NONE:
            return
        if reply.event is ev.BEGIN_SESSION:
            self._session = mdb.transition(s, mdb.Begin(uuid7(self.ctx.clock.now_ms()),
                                                        reply.funds, reply.media_id))
        elif reply.event is ev.CODE_ENTERED:
            await self._on_code(reply.code)
        elif reply.event is ev.SELECTION:
            slot = self._planogram.get(reply.door)
            held = self._desk is not None and self._desk.held(self.device_id, reply.door)
            if slot is None or held or s.state is not mdb.State.SESSION:
                logger.info("%s: selection of door %d not vendable%s", self.device_id,
                            reply.door, " (held for a pickup)" if held else "")
                if s.state is mdb.State.SESSION:
                    self._session = mdb.transition(s, mdb.Cancel())
                    await self._request(v.Cmd.SESSION_DONE)
                return
            price = self._price(reply.door, slot)
            self._session = mdb.transition(s, mdb.Request(price, slot.item, reply.door))
            await self._request(v.Cmd.VEND_REQUEST, v.vend_request_payload(price, slot.item))
        elif reply.event is ev.VEND_APPROVED:
            self._session = mdb.transition(s, mdb.Approved(reply.amount))
            ok = await self._dispense(self._session.door)
            self._session = mdb.transition(self._session, mdb.Dispensed(ok))
            if ok:
                await self._request(v.Cmd.VEND_SUCCESS, self._session.item.to_bytes(2, "big"))
            else:
                await self._request(v.Cmd.VEND_FAILURE)
            await self._settle()
        elif reply.event is ev.VEND_DENIED:
            self._session = mdb.transition(s, mdb.Denied())
            await self._settle()
        elif reply.event is ev.CANCEL_REQUEST:
            was_requested = s.state is mdb.State.REQUESTED
            self._session = mdb.transition(s, mdb.Cancel())
            await self._request(v.Cmd.VEND_CANCEL if was_requested else v.Cmd.SESSION_DONE)
        elif reply.event is ev.END_SESSION:
            self._session = mdb.transition(s, mdb.End())
            await self._emit_vend()  # an approved vend the reader ended is still reported
            self._session = mdb.Session()

    def _price(self, door: int, slot: Slot) -> int:
        """The vend's price: the engine's with a desk (the member's, if a member code
        came within the window), else the planogram's."""
        member = None
        if self._member is not None:
            member, until = self._member
            self._member = None  # one vend per code
            if self.ctx.clock.now_ms() > until:
                member = None
        if self._desk is None or self._session.session_id is None:
            return slot.price
        priced = self._desk.price_vend(
            self.device_id, VendItem(door=door, item=slot.item, sku=slot.sku,
                                     price=slot.price, best_before_ms=slot.best_before_ms),
            member)
        if priced is None:
            return slot.price
        self._sale = (self._session.session_id, priced.sale)
        return priced.price

    async def _on_code(self, code: str) -> None:
        desk = self._desk
        if desk is None:
            self._codes.labels(device=self.device_id, result="no_desk").inc()
            logger.warning("%s: a code was entered but no cabinets module answers codes",
                           self.device_id)
            return
        answer = await desk.code_entered(self.device_id, code)
        if isinstance(answer, CodeRefused):
            self._codes.labels(device=self.device_id, result=answer.reason).inc()
            return  # the desk logged why
        if isinstance(answer, MemberHere):
            self._member = (answer.member, self.ctx.clock.now_ms() + MEMBER_WINDOW_MS)
            self._codes.labels(device=self.device_id, result="member").inc()
            return
        assert isinstance(answer, OpenDoor)
        if self._session.state is not mdb.State.IDLE:  # a customer is mid-vend: try later
            await desk.door_result(self.device_id, answer.order_id, opened=False)
            self._codes.labels(device=self.device_id, result="busy").inc()
            logger.warning("%s: pickup %s not opened: a vend session is in progress",
                           self.device_id, answer.order_id)
            return
        try:
            opened = await self._dispense(answer.door)
        except DriverError:
            # The board may or may not have opened it (a lost reply): the pickup stays
            # claimed, so no second opening; staff see it in the log and the metric.
            self._codes.labels(device=self.device_id, result="pickup_unknown").inc()
            logger.error("%s: pickup %s: door %d unlock unanswered; left claimed",
                         self.device_id, answer.order_id, answer.door)
            raise
        await desk.door_result(self.device_id, answer.order_id, opened=opened)
        self._codes.labels(device=self.device_id,
                           result="pickup_opened" if opened else "pickup_jammed").inc()

    def attach_desk(self, desk: CabinetDesk | None) -> None:
        self._desk = desk

    async def _settle(self) -> None:
        await self._emit_vend()
        await self._request(v.Cmd.SESSION_DONE)

    async def _emit_vend(self) -> None:
        s = self._session
        if not s.vend_settled or s.session_id is None or s.session_id in self._emitted:
            return
        slot = self._planogram.get(s.door)
        data = mdb.vend_event_data(s, device_id=self.device_id,
                                   item_sku=slot.sku if slot else None)
        if self._sale is not None and self._sale[0] == s.session_id:
            data = self._sale[1] | data  # the engine's sale fields beside the vend's own
        await self.ctx.emit_event(
            "vend", device_id=self.device_id, data=data,
            event_id=mdb.vend_event_id(self.ctx.store_id, self.device_id, s.session_id))
        self._emitted.add(s.session_id)
        if len(self._emitted) > 1024:  # only the current session can repeat; stay bounded
            self._emitted = {s.session_id}
        self._vends.labels(device=self.device_id, outcome=s.outcome).inc()

    async def _dispense(self, door: int) -> bool:
        """Unlock, then read the door state back: only a door seen open is a vend."""
        door_no, result = v.parse_unlock_reply(await self._request(v.Cmd.UNLOCK, bytes((door,))))
        if door_no != door or result is not v.UnlockResult.OK:
            logger.warning("%s: unlock door %d answered %s", self.device_id, door, result.name)
            self._jammed.add(door)
            return False
        await asyncio.sleep(UNLOCK_SETTLE_S)
        opened = door in (await self._read_status()).open_doors
        if opened:
            self._jammed.discard(door)
        else:
            logger.warning("%s: door %d still shut after unlock (jammed)", self.device_id, door)
            self._jammed.add(door)
        return opened

    # ---- health and commands -----------------------------------------------------------------

    def health(self) -> DeviceHealth:
        alarms = [f"door_jammed:{d}" for d in sorted(self._jammed)]
        st = self._status
        if st is not None and st.temperature_c > self.options.max_temperature_c:
            alarms.append("temperature_high")
        details: dict[str, Any] = {"session": self._session.state.value,
                                   "firmware_version": self.firmware.running_version,
                                   "update": self.firmware.state.snapshot()}
        if st is not None:
            details |= {"temperature_c": st.temperature_c, "open_doors": sorted(st.open_doors)}
        return DeviceHealth(online=self._online, last_seen_ms=self._last_seen,
                            alarms=tuple(alarms), details=details)

    def busy_reason(self) -> str | None:
        """A rollout defers while a customer is mid-vend or the board is being flashed."""
        if self.firmware.state.busy:
            return "a firmware update is running"
        if self._session.state is not mdb.State.IDLE:
            return f"a vend session is in progress ({self._session.state.value})"
        return None

    def _board_online(self) -> None:
        if self._board is None:
            raise CommandRejected(self.device_id, "cabinet offline", reason="offline")

    @command("unlock", Unlock, sensitive=True)
    async def _unlock(self, args: Unlock) -> dict[str, Any]:
        self._board_online()
        if self._session.state is not mdb.State.IDLE:
            raise CommandRejected(self.device_id, "a vend session is in progress", reason="busy")
        return {"door": args.door, "opened": await self._dispense(args.door)}

    @command("firmware_update", FirmwareUpdate)
    async def _firmware_update(self, args: FirmwareUpdate) -> dict[str, Any]:
        self._board_online()
        if self._session.state is not mdb.State.IDLE:
            raise CommandRejected(self.device_id, "a vend session is in progress",
                                  reason="busy")
        return await self.firmware.update(args)

    @command("status")
    async def _cmd_status(self, args: Any) -> dict[str, Any]:
        self._board_online()
        st = await self._read_status()
        return {"open_doors": sorted(st.open_doors), "temperature_c": st.temperature_c}


def _code_counter(ctx: DriverContext) -> Counter:
    return registry_scoped(ctx.registry, "vending_codes", lambda r: Counter(
        "storefleet_vending_codes", "codes entered at cabinets, by result (pickup_opened, "
        "pickup_jammed, pickup_unknown, member, busy, no_desk, or the refusal's reason)",
        ["device", "result"], registry=r))


def _vend_counter(ctx: DriverContext) -> Counter:
    return registry_scoped(ctx.registry, "vends", lambda r: Counter(
        "storefleet_vends", "settled vend sessions", ["device", "outcome"], registry=r))
