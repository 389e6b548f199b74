"""Barcode scanner output on a serial line: AIM symbology identifier + data + CR.

A scanner configured for "AIM ID prefix, CR suffix" (the factory option on most
Honeywell, Zebra and Datalogic models) sends ``]`` + code character + modifier, the
decoded data, then CR (some add LF). ``ScanDecoder.feed(bytes)`` returns ``Scan``s and
``Rejected`` chunks; a line longer than ``MAX_LINE`` (a babbling device, a wrong baud
rate) is dropped up to the next terminator, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 512  # longer than any 1D code and most 2D payloads we act on at a till

# AIM code character -> symbology (ISO/IEC 15424); the modifier refines some of them.
_CODES = {"A": "CODE39", "C": "CODE128", "E": "EAN/UPC", "F": "CODABAR", "G": "CODE93",
          "I": "ITF", "Q": "QR", "d": "DATAMATRIX", "e": "GS1-DATABAR", "L": "PDF417",
          "z": "AZTEC", "X": "OTHER"}
_REFINED = {"E0": "EAN13", "E4": "EAN8", "C1": "GS1-128", "d2": "GS1-DATAMATRIX",
            "Q3": "GS1-QR"}


@dataclass(frozen=True, slots=True)
class Scan:
    data: str
    symbology: str  # e.g. EAN13, CODE128, QR; "UNKNOWN" without an AIM prefix
    aim_id: str | None = None  # e.g. "]E0"


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # overflow | empty | not_text | bad_prefix
    size: int


def parse_line(line: bytes) -> Scan | Rejected:
    if not line:
        return Rejected("empty", 0)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("not_text", len(line))
    if not text.isprintable():
        return Rejected("not_text", len(line))
    if not text.startswith("]"):
        return Scan(text, "UNKNOWN")
    if len(text) < 4 or text[1] not in _CODES:
        return Rejected("bad_prefix", len(line))
    aim = text[:3]
    symbology = _REFINED.get(aim[1:]) or _CODES[aim[1]]
    if aim == "]E0" and len(text) == 15 and text[3] == "0":  # UPC-A is EAN-13 with a 0
        symbology = "UPC-A"
    return Scan(text[3:], symbology, aim)


class ScanDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Scan | Rejected]:
        out: list[Scan | Rejected] = []
        start = 0
        for i, byte in enumerate(data):
            if byte in (0x0D, 0x0A):
                self._take(data[start:i], out, end=True)
                start = i + 1
        self._take(data[start:], out, end=False)
        return out

    def _take(self, piece: bytes, out: list[Scan | Rejected], *, end: bool) -> None:
        if not self._discarding:
            self._buf += piece
            if len(self._buf) > MAX_LINE:
                out.append(Rejected("overflow", len(self._buf)))
                self._buf.clear()
                self._discarding = True
        if end:
            if not self._discarding and self._buf:  # CR LF: the empty line after CR is no scan
                out.append(parse_line(bytes(self._buf)))
            self._buf.clear()
            self._discarding = False
