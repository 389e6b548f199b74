"""A vending cabinet on a serial line: lock board + cashless reader (``protocols.vending``).

The simulator owns the master end of a pty; the driver under test opens the slave with
pyserial. A customer is simulated with ``customer(door, funds)`` (card tap, then a key
press on the cabinet's keypad); the reader approves a vend when the funds cover the
price. ``wait_idle()`` waits until the reader has ended the session (``customers.py``
runs a stream of customers on it). Fault injection (``VendingFaults``) works on the
replies the board sends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from firmware_sim.printer.ports import PortClosed, PtyPort
from firmware_sim.vending.bootloader import BoardBootloader
from protocols import vending as v

logger = logging.getLogger(__name__)


class BoardBusy(Exception):
    """The board refuses a request now (answered with error BUSY)."""


@dataclass
class VendingFaults:
    corrupt_every: int = 0  # flip a CRC bit in every Nth reply
    drop_every: int = 0  # never send every Nth reply
    truncate_every: int = 0  # send only the first half of every Nth reply
    garbage_every: int = 0  # noise bytes (with a stray STX) before every Nth reply
    wrong_seq_every: int = 0  # send a stale reply (previous SEQ) before every Nth reply
    delay_s: float = 0.0  # answer this late
    jammed_doors: set[int] = field(default_factory=set)  # report OK but stay shut
    corrupt_blocks: set[int] = field(default_factory=set)  # firmware blocks damaged once
    boot_fails: bool = False  # a verified image does not start: the old one runs again
    unbootable: frozenset[str] = frozenset()  # as boot_fails, for these versions only

    @staticmethod
    def hit(every: int, n: int) -> bool:
        return every > 0 and n % every == 0


@dataclass
class VendRecord:
    item: int
    price: int
    success: bool | None = None
    media_id: int = 0  # the card of the session that asked for this vend


class VendingCabinetSim:
    def __init__(self, port: PtyPort, *, doors: int = 8, temperature_c: float = 4.0,
                 faults: VendingFaults | None = None, seed: int = 7) -> None:
        self.port = port
        self.doors = doors
        self.temperature_c = temperature_c
        self.faults = faults or VendingFaults()
        self.open_doors: set[int] = set()
        self.unlocks: list[int] = []  # doors actually released, in order
        self.vends: list[VendRecord] = []
        self.received = 0
        self.rejected = 0
        self.polls = 0  # POLLs answered: the VMC acts on an event before it polls again
        self._polled = asyncio.Event()
        self._replies = 0
        self._events: deque[v.PollReply] = deque(maxlen=64)
        self._funds = 0
        self._media_id = 0
        self.session_open = False  # from BEGIN_SESSION polled to END_SESSION polled
        self._idle = asyncio.Event()  # no session open and no reader event waiting
        self._idle.set()
        self._last: tuple[int, int, bytes, bytes] | None = None  # seq, cmd, payload, reply
        self._rng = random.Random(seed)
        self._decoder = v.FrameDecoder()
        self.bootloader = BoardBootloader(corrupt_blocks=set(self.faults.corrupt_blocks),
                                          boot_fails=self.faults.boot_fails,
                                          unbootable=self.faults.unbootable)
        self.reboot_s = 0.3  # silent this long after FW_REBOOT
        self.reboots = 0
        self._rebooting_until = 0.0

    @property
    def firmware_version(self) -> str:
        return self.bootloader.version

    def tap(self, funds: int, *, media_id: int = 1) -> None:
        """A card tap only: the customer is still choosing (a session is open)."""
        self._events.append(v.PollReply(v.PollEvent.BEGIN_SESSION, funds=funds,
                                        media_id=media_id))
        self._idle.clear()

    # ---- the customer and the service tech -------------------------------------------------

    def customer(self, door: int, funds: int, *, media_id: int = 1) -> None:
        """A card tap followed by a key press for ``door``."""
        self._events.append(v.PollReply(v.PollEvent.BEGIN_SESSION, funds=funds,
                                        media_id=media_id))
        self._events.append(v.PollReply(v.PollEvent.SELECTION, door=door))
        self._idle.clear()

    def enter_code(self, code: str) -> None:
        """A code typed on the keypad or held to the QR reader (pickup or member code);
        the VMC reads it on its next POLL (``CODE_ENTERED``, decision 0066)."""
        self._events.append(v.PollReply(v.PollEvent.CODE_ENTERED, code=code))
        self._idle.clear()

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Until every waiting event was polled, the session ended, and the VMC polled
        once more: what it did about the last event (an unlock) is done."""
        async with asyncio.timeout(timeout_s):
            await self.wait_idle()
            self._polled.clear()
            await self._polled.wait()
            await self.wait_idle()

    async def collect(self, code: str, *, timeout_s: float = 10.0) -> list[int]:
        """A shopper enters a pickup code: the doors it unlocked (one, or none when the
        box refused the code)."""
        before = len(self.unlocks)
        self.enter_code(code)
        await self.settled(timeout_s)
        return self.unlocks[before:]

    async def member_vend(self, code: str, *, door: int, funds: int,
                          timeout_s: float = 10.0) -> VendRecord | None:
        """A member shows their code, taps a card and presses ``door``: the vend the
        reader was asked for (its price is the member's), or None."""
        before = len(self.vends)
        self.enter_code(code)
        self.customer(door, funds)
        await self.settled(timeout_s)
        return self.vends[before] if len(self.vends) > before else None

    def cancel(self) -> None:
        self._events.append(v.PollReply(v.PollEvent.CANCEL_REQUEST))
        self._idle.clear()

    @property
    def idle(self) -> bool:
        """No session open and no reader event waiting for the VMC's poll."""
        return self._idle.is_set()

    async def wait_idle(self) -> None:
        """Until the VMC has polled every reader event and the session has ended."""
        await self._idle.wait()

    def walk_away(self) -> None:
        """The customer gives up on a cabinet that does not answer: the card tap and key
        press nobody polled are withdrawn, and a session the VMC did open is cancelled."""
        taps = (v.PollEvent.BEGIN_SESSION, v.PollEvent.SELECTION)
        kept = [e for e in self._events if e.event not in taps]
        self._events.clear()
        self._events.extend(kept)
        if self.session_open and not any(e.event is v.PollEvent.END_SESSION for e in kept):
            self._events.append(v.PollReply(v.PollEvent.CANCEL_REQUEST))
        self._update_idle()

    def close_door(self, door: int) -> None:
        self.open_doors.discard(door)

    async def flood(self, nbytes: int) -> None:
        """A babbling device: random bytes, STX included."""
        await self.port.write(bytes(self._rng.randrange(256) for _ in range(nbytes)))

    # ---- the board ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until cancelled (survives unplug/replug of the port)."""
        while True:
            try:
                data = await self.port.read()
            except PortClosed:
                await asyncio.sleep(0.02)  # unplugged: wait for replug
                continue
            for item in self._decoder.feed(data):
                if isinstance(item, v.Rejected):
                    self.rejected += 1
                    continue
                self.received += 1
                await self._answer(item)

    async def _answer(self, frame: v.Frame) -> None:
        if asyncio.get_running_loop().time() < self._rebooting_until:
            return  # restarting: nobody listens
        if self._last is not None and self._last[:3] == (frame.seq, frame.cmd, frame.payload):
            reply = self._last[3]  # retransmission: answer again, do not act again
        else:
            reply = v.encode(self._handle(frame))
            self._last = (frame.seq, frame.cmd, frame.payload, reply)
        self._replies += 1
        n, f = self._replies, self.faults
        if f.delay_s:
            await asyncio.sleep(f.delay_s)
        if f.hit(f.drop_every, n):
            return
        out = b""
        if f.hit(f.garbage_every, n):
            out += bytes((0x55, v.STX, 0x07, 0xAA, 0x00))
        if f.hit(f.wrong_seq_every, n):
            out += v.encode(v.Frame((frame.seq - 1) % 256, frame.cmd | v.REPLY_BIT, b""))
        if f.hit(f.corrupt_every, n):
            reply = reply[:-3] + bytes((reply[-3] ^ 0x01,)) + reply[-2:]
        if f.hit(f.truncate_every, n):
            reply = reply[: len(reply) // 2]
        try:
            await self.port.write(out + reply)
        except PortClosed:
            pass  # unplugged mid-reply, as a cable pull would do

    def _handle(self, frame: v.Frame) -> v.Frame:
        try:
            payload = self._dispatch(frame)
        except BoardBusy:
            return v.Frame(frame.seq, v.Cmd.ERROR, bytes((v.ErrorCode.BUSY,)))
        except v.VendingFrameError:
            return v.Frame(frame.seq, v.Cmd.ERROR, bytes((v.ErrorCode.BAD_PAYLOAD,)))
        if payload is None:
            return v.Frame(frame.seq, v.Cmd.ERROR, bytes((v.ErrorCode.UNKNOWN_CMD,)))
        return v.reply_to(frame, payload)

    def _dispatch(self, frame: v.Frame) -> bytes | None:
        cmd, p = frame.cmd, frame.payload
        if cmd == v.Cmd.UNLOCK:
            if len(p) != 1:
                raise v.VendingFrameError("bad_payload", "UNLOCK")
            door = p[0]
            if door >= self.doors:
                return bytes((door, v.UnlockResult.NO_SUCH_DOOR))
            if door not in self.faults.jammed_doors:
                self.open_doors.add(door)
                self.unlocks.append(door)
            return bytes((door, v.UnlockResult.OK))
        if cmd in (v.Cmd.INFO, v.Cmd.FW_START, v.Cmd.FW_BLOCK, v.Cmd.FW_VERIFY,
                   v.Cmd.FW_REBOOT):
            return self._bootloader(frame)
        if cmd == v.Cmd.STATUS:
            return v.CabinetStatus(frozenset(self.open_doors), self.temperature_c).encode()
        if cmd == v.Cmd.POLL:
            self.polls += 1
            self._polled.set()
            event = self._events.popleft() if self._events else v.PollReply(v.PollEvent.NONE)
            if event.event is v.PollEvent.BEGIN_SESSION:
                self._funds = event.funds
                self._media_id = event.media_id
                self.session_open = True
            elif event.event is v.PollEvent.END_SESSION:
                self.session_open = False
            self._update_idle()
            return event.encode()
        if cmd == v.Cmd.VEND_REQUEST:
            price, item = v.parse_vend_request(p)
            self.vends.append(VendRecord(item, price, media_id=self._media_id))
            ok = price <= self._funds
            self._events.append(v.PollReply(v.PollEvent.VEND_APPROVED, amount=price) if ok
                                else v.PollReply(v.PollEvent.VEND_DENIED))
            return b""
        if cmd in (v.Cmd.VEND_SUCCESS, v.Cmd.VEND_FAILURE):
            if self.vends:
                self.vends[-1].success = cmd == v.Cmd.VEND_SUCCESS
            return b""
        if cmd in (v.Cmd.SESSION_DONE, v.Cmd.VEND_CANCEL):
            self._funds = 0
            self._events.append(v.PollReply(v.PollEvent.END_SESSION))
            self._update_idle()
            return b""
        return None

    def _bootloader(self, frame: v.Frame) -> bytes:
        cmd, p, boot = frame.cmd, frame.payload, self.bootloader
        if cmd == v.Cmd.INFO:
            return boot.version.encode("ascii")
        if cmd == v.Cmd.FW_START:
            if self.session_open:
                raise BoardBusy
            return boot.start(p)
        if cmd == v.Cmd.FW_BLOCK:
            return boot.block(p)
        if cmd == v.Cmd.FW_VERIFY:
            return boot.verify()
        reply, restarts = boot.reboot()
        if restarts:
            self.reboots += 1
            self._rebooting_until = asyncio.get_running_loop().time() + self.reboot_s
            self._last = None  # RAM, and the reply cache with it, is lost
        return reply

    def _update_idle(self) -> None:
        if self._events or self.session_open:
            self._idle.clear()
        else:
            self._idle.set()


async def start_vending_sim(*, link: Path | None = None, doors: int = 8,
                            faults: VendingFaults | None = None, temperature_c: float = 4.0
                            ) -> tuple[VendingCabinetSim, asyncio.Task[None]]:
    """Open a pty, start the cabinet on it; the driver opens ``sim.port.path``.
    Cancel the task and call ``sim.port.close()`` to stop."""
    port = PtyPort(link=link).open()
    sim = VendingCabinetSim(port, doors=doors, faults=faults, temperature_c=temperature_c)
    task = asyncio.create_task(sim.run(), name=f"vending-sim-{port.slave_name}")
    return sim, task
