"""The simulated lock board's bootloader (``protocols.vending`` FW_* commands). No I/O.

It stages blocks in order, checks each block's CRC-32 (a bad one is answered
``BAD_CRC`` and not stored, so the VMC sends it again), verifies the image's own CRC-32
and size on FW_VERIFY (a bad image is dropped; the running firmware is untouched) and
on FW_REBOOT starts the verified image. ``corrupt_blocks`` flips a bit in a block's
data on its first arrival (what a noisy buffer does after the frame CRC passed);
``boot_fails`` makes a verified image fail to start, so the board falls back to the
version it ran before; ``unbootable`` does that for some versions only (a board
variant that a release does not support, while the next release starts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from protocols import vending as v

# A small board's flash page: blocks of 128 bytes keep a frame well under MAX_PAYLOAD.
BLOCK_SIZE = 128


@dataclass
class BoardBootloader:
    version: str = "1.0.0"
    corrupt_blocks: set[int] = field(default_factory=set)
    boot_fails: bool = False
    unbootable: frozenset[str] = frozenset()  # versions that fail to start on this board
    size: int | None = None  # from FW_START; None: no update staged
    staged_version: str = ""
    data: bytearray = field(default_factory=bytearray)
    verified: bool = False
    blocks: list[int] = field(default_factory=list)  # block numbers as they arrived
    stats: Counter[str] = field(default_factory=Counter)

    def start(self, payload: bytes) -> bytes:
        size, version = v.parse_fw_start(payload)
        self.size, self.staged_version = size, version
        self.data = bytearray()
        self.verified = False
        return BLOCK_SIZE.to_bytes(2, "big")

    def block(self, payload: bytes) -> bytes:
        n, crc, data = v.parse_fw_block(payload)
        self.blocks.append(n)
        if n in self.corrupt_blocks:
            self.corrupt_blocks.discard(n)
            data = bytes((data[0] ^ 0x01,)) + data[1:]
        status = v.BlockStatus.OK
        if self.size is None:
            status = v.BlockStatus.NO_UPDATE
        elif n * BLOCK_SIZE != len(self.data) and (n + 1) * BLOCK_SIZE != len(self.data):
            status = v.BlockStatus.OUT_OF_ORDER
        elif v.crc32(data) != crc:
            status = v.BlockStatus.BAD_CRC
            self.stats["bad_crc"] += 1
        elif n * BLOCK_SIZE == len(self.data):  # the block after the last (else: a repeat)
            self.data += data
        return n.to_bytes(2, "big") + bytes((status,))

    def verify(self) -> bytes:
        if self.size is None:
            result = v.VerifyResult.NO_UPDATE
        elif len(self.data) != self.size:
            result = v.VerifyResult.INCOMPLETE
        elif not v.image_ok(bytes(self.data)):
            result = v.VerifyResult.BAD_IMAGE
            self.size = None  # dropped: the running firmware stays
            self.stats["bad_image"] += 1
        else:
            result = v.VerifyResult.OK
            self.verified = True
        return bytes((result,))

    def reboot(self) -> tuple[bytes, bool]:
        """(reply, whether the board now restarts)."""
        if not self.verified:
            return bytes((1,)), False
        if not self.boot_fails and self.staged_version not in self.unbootable:
            self.version = self.staged_version
        else:
            self.stats["boot_failed"] += 1  # the old image is still in its bank
        self.size, self.verified = None, False
        return bytes((0,)), True
