"""Vending cabinet lock-board protocol (serial, 9600 8N1): frames and their codec. No I/O.

Datasheet
---------
The agent (the vending machine controller, VMC) is the master; the cabinet's lock
board answers every request with exactly one reply. Byte layout of every frame::

    +------+-----+-----+-----+-------------+--------+------+
    | STX  | LEN | SEQ | CMD | PAYLOAD     | CRC16  | ETX  |
    | 0x02 | 1 B | 1 B | 1 B | 0..250 B    | 2 B BE | 0x03 |
    +------+-----+-----+-----+-------------+--------+------+

* ``LEN`` = number of bytes in SEQ + CMD + PAYLOAD (2..252).
* ``SEQ`` = request sequence number 0..255 chosen by the VMC; a reply echoes it. A
  retransmission re-uses the SEQ of the original request, and the board answers it
  from its reply cache without acting twice (so a retried UNLOCK opens one door once).
* ``CMD`` of a reply = request CMD | 0x80. ``0xFF`` is the board's error reply.
* ``CRC16`` = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final
  xor) over LEN, SEQ, CMD and PAYLOAD, sent big-endian.
* Integers in payloads are big-endian; money is unsigned 32-bit minor units.
* STX may occur inside a frame; a receiver finds frames by STX, checks LEN, ETX and
  CRC, and on any failure drops the one STX byte and searches again (resynchronise).

Lock board commands

=====  ==============  ===========================  ==================================
CMD    name            request payload              reply payload
=====  ==============  ===========================  ==================================
0x01   UNLOCK          door u8                      door u8, result u8 (UnlockResult)
0x02   STATUS          -                            open-door bitmap u16 (bit n = door
                                                    n, 0-based), temperature i16 in
                                                    0.1 degC
=====  ==============  ===========================  ==================================

Cashless reader commands (modelled on MDB cashless level 1, carried on the same link):

=====  ==============  ===========================  ==================================
0x10   POLL            -                            one pending reader event (below)
0x11   VEND_REQUEST    price u32, item u16          - (the answer comes on a POLL)
0x12   VEND_SUCCESS    item u16                     -
0x13   VEND_FAILURE    -                            -
0x14   SESSION_DONE    -                            - (END_SESSION comes on a POLL)
0x15   VEND_CANCEL     -                            -
=====  ==============  ===========================  ==================================

POLL reply payload: event u8 then data. Events: 0x00 NONE; 0x03 BEGIN_SESSION (funds
u32, media id u32); 0x05 VEND_APPROVED (amount u32); 0x06 VEND_DENIED; 0x07
END_SESSION; 0x04 CANCEL_REQUEST (the customer pressed cancel); 0x20 SELECTION (door u8:
the cabinet's keypad, which on a real machine the VMC reads itself); 0x21 CODE_ENTERED
(length u8, then that many ASCII bytes, 1..200: a code typed on the keypad or scanned by
the cabinet's QR reader, a pickup code or a member code; decision 0066).

Error reply ``0xFF``: code u8 (ErrorCode).

Bootloader commands (firmware update, decision 0039):

=====  ==============  ===========================  ==================================
0x03   INFO            -                            firmware version (ASCII, 1..32 B)
0x30   FW_START        size u32, version (ASCII)    block size u16 (the board's choice);
                                                    error BUSY while a session is open
0x31   FW_BLOCK        block u16, crc32 u32, data   block u16, status u8 (BlockStatus)
0x32   FW_VERIFY       -                            result u8 (VerifyResult)
0x33   FW_REBOOT       -                            result u8 (0: rebooting into the
                                                    verified image, 1: nothing verified)
=====  ==============  ===========================  ==================================

A block's CRC-32 (IEEE, ``zlib.crc32``) covers its data only: the frame's CRC-16 guards
the wire, the block's CRC-32 what reaches the board's buffer; a block whose CRC does not
match is answered ``BAD_CRC`` and the VMC sends it again. Blocks go in order (block n
covers bytes ``n * block_size`` onwards). An image ends with the CRC-32 of everything
before it (4 bytes, big-endian; ``firmware_image`` builds one): ``FW_VERIFY`` checks it
and the size, ``BAD_IMAGE`` drops the staged image and the board keeps its firmware.
After ``FW_REBOOT`` the board is silent while it restarts, then ``INFO`` names the
version it runs: the new one, or the old one when the new one failed to start.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from protocols.errors import ProtocolError

STX = 0x02
ETX = 0x03
MAX_PAYLOAD = 250  # keeps LEN in one byte with room for SEQ and CMD
MAX_FRAME = 1 + 1 + 2 + MAX_PAYLOAD + 2 + 1  # 257 bytes: bound of the receive buffer
REPLY_BIT = 0x80


class Cmd(enum.IntEnum):
    UNLOCK = 0x01
    STATUS = 0x02
    INFO = 0x03
    POLL = 0x10
    VEND_REQUEST = 0x11
    VEND_SUCCESS = 0x12
    VEND_FAILURE = 0x13
    SESSION_DONE = 0x14
    VEND_CANCEL = 0x15
    FW_START = 0x30
    FW_BLOCK = 0x31
    FW_VERIFY = 0x32
    FW_REBOOT = 0x33
    ERROR = 0xFF


class UnlockResult(enum.IntEnum):
    OK = 0
    JAMMED = 1  # the solenoid fired but the latch did not release
    NO_SUCH_DOOR = 2


class ErrorCode(enum.IntEnum):
    UNKNOWN_CMD = 1
    BAD_PAYLOAD = 2
    BUSY = 3


class BlockStatus(enum.IntEnum):
    OK = 0
    BAD_CRC = 1  # the data does not match the block's CRC-32: send it again
    OUT_OF_ORDER = 2  # not the block the board expects next
    NO_UPDATE = 3  # no FW_START before it


class VerifyResult(enum.IntEnum):
    OK = 0
    BAD_IMAGE = 1  # the image's own CRC-32 does not match: the old firmware stays
    INCOMPLETE = 2  # fewer bytes than FW_START announced
    NO_UPDATE = 3


class PollEvent(enum.IntEnum):
    NONE = 0x00
    BEGIN_SESSION = 0x03
    CANCEL_REQUEST = 0x04
    VEND_APPROVED = 0x05
    VEND_DENIED = 0x06
    END_SESSION = 0x07
    SELECTION = 0x20
    CODE_ENTERED = 0x21


CODE_MAX = 200  # a signed pickup code is ~140 characters; the frame holds 250 bytes


class VendingFrameError(ProtocolError):
    """A payload that does not match its command (``reason`` is a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.cmd & REPLY_BIT)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; check value for b"123456789" is 0x29B1."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode(frame: Frame) -> bytes:
    if not 0 <= frame.seq <= 255 or not 0 <= frame.cmd <= 255:
        raise VendingFrameError("bad_field", "seq and cmd are single bytes")
    if len(frame.payload) > MAX_PAYLOAD:
        raise VendingFrameError("too_large", f"payload of {len(frame.payload)} bytes")
    body = bytes((2 + len(frame.payload), frame.seq, frame.cmd)) + frame.payload
    return bytes((STX,)) + body + crc16(body).to_bytes(2, "big") + bytes((ETX,))


def reply_to(request: Frame, payload: bytes = b"") -> Frame:
    return Frame(request.seq, request.cmd | REPLY_BIT, payload)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bytes the decoder threw away, and why (``garbage``, ``bad_checksum``,
    ``bad_length``, ``bad_etx``, ``overflow``, ``truncated``)."""

    reason: str
    size: int


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` -> frames and rejections, in order.

    The buffer never holds more than ``MAX_FRAME`` bytes: bytes before an STX are
    rejected at once, and a frame that cannot be complete is cut down by resyncing,
    so a device that floods garbage costs constant memory.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | Rejected]:
        out: list[Frame | Rejected] = []
        self._buf += data
        while self._buf:
            start = self._buf.find(STX)
            if start < 0:
                out.append(Rejected("garbage", len(self._buf)))
                self._buf.clear()
                break
            if start:
                out.append(Rejected("garbage", start))
                del self._buf[:start]
            if len(self._buf) < 2:
                break
            length = self._buf[1]
            if length < 2 or length > MAX_PAYLOAD + 2:
                out.append(Rejected("bad_length", 1))
                del self._buf[:1]
                continue
            total = length + 5  # STX LEN ... CRC CRC ETX
            if len(self._buf) < total:
                # A stray STX with a plausible LEN would hold back a real frame behind
                # it until a timeout; a complete, CRC-valid frame later on wins.
                later = self._complete_frame_after(1)
                if later < 0:
                    break
                out.append(Rejected("garbage", later))
                del self._buf[:later]
                continue
            body = bytes(self._buf[1 : 2 + length])
            crc = int.from_bytes(self._buf[2 + length : 4 + length], "big")
            if self._buf[total - 1] != ETX:
                out.append(Rejected("bad_etx", 1))
                del self._buf[:1]
                continue
            if crc != crc16(body):
                out.append(Rejected("bad_checksum", 1))
                del self._buf[:1]
                continue
            out.append(Frame(body[1], body[2], body[3:]))
            del self._buf[:total]
        return out

    def _complete_frame_after(self, start: int) -> int:
        buf = self._buf
        pos = buf.find(STX, start)
        while pos >= 0 and pos + 2 <= len(buf):
            length = buf[pos + 1]
            end = pos + length + 5
            if 2 <= length <= MAX_PAYLOAD + 2 and end <= len(buf) and buf[end - 1] == ETX:
                body = bytes(buf[pos + 1 : pos + 2 + length])
                if int.from_bytes(buf[pos + 2 + length : end - 1], "big") == crc16(body):
                    return pos
            pos = buf.find(STX, pos + 1)
        return -1

    def reset(self) -> Rejected | None:
        """Drop a partial frame (after a reply timeout); returns it as ``truncated``."""
        if not self._buf:
            return None
        rejected = Rejected("truncated", len(self._buf))
        self._buf.clear()
        return rejected


# ---- payload helpers (both ends use them, so the layouts live in one place) ---------------


@dataclass(frozen=True, slots=True)
class CabinetStatus:
    open_doors: frozenset[int]
    temperature_c: float

    def encode(self) -> bytes:
        bitmap = 0
        for door in self.open_doors:
            bitmap |= 1 << door
        return struct.pack(">Hh", bitmap, round(self.temperature_c * 10))

    @classmethod
    def decode(cls, payload: bytes) -> CabinetStatus:
        if len(payload) != 4:
            raise VendingFrameError("bad_payload", f"STATUS reply of {len(payload)} bytes")
        bitmap, deci = struct.unpack(">Hh", payload)
        return cls(frozenset(n for n in range(16) if bitmap >> n & 1), deci / 10)


@dataclass(frozen=True, slots=True)
class PollReply:
    event: PollEvent
    funds: int = 0  # BEGIN_SESSION: funds available, minor units
    media_id: int = 0  # BEGIN_SESSION: card/media token id
    amount: int = 0  # VEND_APPROVED: amount approved, minor units
    door: int = 0  # SELECTION
    code: str = ""  # CODE_ENTERED: printable ASCII

    def encode(self) -> bytes:
        head = bytes((self.event,))
        if self.event is PollEvent.BEGIN_SESSION:
            return head + struct.pack(">II", self.funds, self.media_id)
        if self.event is PollEvent.VEND_APPROVED:
            return head + struct.pack(">I", self.amount)
        if self.event is PollEvent.SELECTION:
            return head + bytes((self.door,))
        if self.event is PollEvent.CODE_ENTERED:
            raw = self.code.encode("ascii", errors="replace")
            if not 0 < len(raw) <= CODE_MAX:
                raise VendingFrameError("bad_field", f"code of {len(raw)} bytes")
            return head + bytes((len(raw),)) + raw
        return head

    @classmethod
    def decode(cls, payload: bytes) -> PollReply:
        if not payload:
            raise VendingFrameError("bad_payload", "empty POLL reply")
        try:
            event = PollEvent(payload[0])
        except ValueError as err:
            raise VendingFrameError("bad_payload", f"unknown poll event {payload[0]:#x}") from err
        data = payload[1:]
        try:
            if event is PollEvent.BEGIN_SESSION:
                funds, media = struct.unpack(">II", data)
                return cls(event, funds=funds, media_id=media)
            if event is PollEvent.VEND_APPROVED:
                (amount,) = struct.unpack(">I", data)
                return cls(event, amount=amount)
            if event is PollEvent.SELECTION:
                (door,) = struct.unpack(">B", data)
                return cls(event, door=door)
            if event is PollEvent.CODE_ENTERED:
                return cls(event, code=_code(data))
        except struct.error as err:
            raise VendingFrameError("bad_payload", f"{event.name}: {err}") from err
        return cls(event)


def _code(data: bytes) -> str:
    if not data or data[0] != len(data) - 1 or not 0 < data[0] <= CODE_MAX:
        raise VendingFrameError("bad_payload", f"CODE_ENTERED of {len(data)} bytes")
    raw = data[1:]
    if not raw.isascii() or not all(0x20 < b < 0x7F for b in raw):
        raise VendingFrameError("bad_payload", "CODE_ENTERED is not printable ASCII")
    return raw.decode("ascii")


def vend_request_payload(price: int, item: int) -> bytes:
    return struct.pack(">IH", price, item)


def parse_vend_request(payload: bytes) -> tuple[int, int]:
    try:
        price, item = struct.unpack(">IH", payload)
    except struct.error as err:
        raise VendingFrameError("bad_payload", f"VEND_REQUEST: {err}") from err
    return price, item


def parse_unlock_reply(payload: bytes) -> tuple[int, UnlockResult]:
    if len(payload) != 2:
        raise VendingFrameError("bad_payload", f"UNLOCK reply of {len(payload)} bytes")
    try:
        return payload[0], UnlockResult(payload[1])
    except ValueError as err:
        raise VendingFrameError("bad_payload", f"unlock result {payload[1]}") from err


# ---- bootloader (firmware update) ---------------------------------------------------------

FW_VERSION_MAX = 32
FW_BLOCK_HEADER = 6  # block u16 + crc32 u32
FW_BLOCK_MAX = MAX_PAYLOAD - FW_BLOCK_HEADER  # 244 bytes of data per frame at most
FW_TRAILER = 4  # the image's own CRC-32


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib's); check value for b"123456789" is 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


def firmware_image(body: bytes) -> bytes:
    """A bootable image: ``body`` followed by its CRC-32 (what FW_VERIFY checks)."""
    return body + crc32(body).to_bytes(FW_TRAILER, "big")


def image_ok(image: bytes) -> bool:
    return len(image) > FW_TRAILER and crc32(image[:-FW_TRAILER]) == int.from_bytes(
        image[-FW_TRAILER:], "big")


def _version_bytes(version: str) -> bytes:
    raw = version.encode("ascii", errors="replace")
    if not 0 < len(raw) <= FW_VERSION_MAX:
        raise VendingFrameError("bad_field", f"firmware version of {len(raw)} bytes")
    return raw


def parse_version(payload: bytes) -> str:
    if not 0 < len(payload) <= FW_VERSION_MAX or not payload.isascii():
        raise VendingFrameError("bad_payload", f"firmware version of {len(payload)} bytes")
    return payload.decode("ascii")


def fw_start_payload(size: int, version: str) -> bytes:
    return struct.pack(">I", size) + _version_bytes(version)


def parse_fw_start(payload: bytes) -> tuple[int, str]:
    if len(payload) < 5:
        raise VendingFrameError("bad_payload", f"FW_START of {len(payload)} bytes")
    (size,) = struct.unpack(">I", payload[:4])
    return size, parse_version(payload[4:])


def fw_block_payload(block: int, data: bytes, *, crc: int | None = None) -> bytes:
    if not 0 < len(data) <= FW_BLOCK_MAX:
        raise VendingFrameError("bad_field", f"firmware block of {len(data)} bytes")
    return struct.pack(">HI", block, crc32(data) if crc is None else crc) + data


def parse_fw_block(payload: bytes) -> tuple[int, int, bytes]:
    """(block, crc32 as sent, data)."""
    if len(payload) <= FW_BLOCK_HEADER:
        raise VendingFrameError("bad_payload", f"FW_BLOCK of {len(payload)} bytes")
    block, crc = struct.unpack(">HI", payload[:FW_BLOCK_HEADER])
    return block, crc, payload[FW_BLOCK_HEADER:]


def parse_fw_block_reply(payload: bytes) -> tuple[int, BlockStatus]:
    if len(payload) != 3:
        raise VendingFrameError("bad_payload", f"FW_BLOCK reply of {len(payload)} bytes")
    try:
        return int.from_bytes(payload[:2], "big"), BlockStatus(payload[2])
    except ValueError as err:
        raise VendingFrameError("bad_payload", f"block status {payload[2]}") from err


def parse_verify_reply(payload: bytes) -> VerifyResult:
    if len(payload) != 1:
        raise VendingFrameError("bad_payload", f"FW_VERIFY reply of {len(payload)} bytes")
    try:
        return VerifyResult(payload[0])
    except ValueError as err:
        raise VendingFrameError("bad_payload", f"verify result {payload[0]}") from err
