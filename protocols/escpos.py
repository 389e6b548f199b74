"""ESC/POS as a receipt printer receives it: an incremental, pure parser. No I/O.

``EscPosParser.feed(bytes)`` returns what the printer must act on, in order:

* ``Page``          a receipt, complete at a cut (GS V, ESC i, ESC m): text lines with
                    bold / alignment / size, barcodes (GS k) and QR codes (GS ( k)
* ``StatusRequest`` a real-time status query the printer answers at once:
                    DLE EOT n (n = 1 printer, 2 offline cause, 3 error cause, 4 paper)
                    or GS r n (1 paper, 2 drawer)
* ``DrawerKick``    ESC p m t1 t2 or DLE DC4 1 m t (pulse on drawer pin 2 or 5)

Robust to what it does not know: an unknown ESC/GS/FS command is skipped with a
best-effort length and counted in ``unknown`` (never printed as text, never an
exception); image data (GS v 0, ESC *, GS ( L) is skipped by count, not buffered, so
the buffer stays under ``MAX_BUFFER`` whatever a client sends.

Status bytes (Epson TM series; bit 1 and bit 4 are always 1, bits 0 and 7 always 0):
DLE EOT 1: bit 2 drawer kick-out connector pin 3 HIGH, bit 3 offline. DLE EOT 2: bit
2 cover open, bit 5 printing stopped by paper end, bit 6 error. DLE EOT 4: bits 2+3
roll paper near end, bits 5+6 roll paper end. GS r 1: bits 0+1 near end, bits 2+3 paper
end. GS r 2: bit 0 drawer pin 3 HIGH. Whether pin 3 HIGH means "open" depends on the
drawer's switch; ``PrinterState`` assumes HIGH = open, as most drawers are wired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C
MAX_BUFFER = 4096  # the longest command we buffer whole (GS ( k QR data is capped at this)
STATUS_BASE = 0x12  # bits 1 and 4 set: every DLE EOT reply has them


@dataclass(frozen=True, slots=True)
class PrintedLine:
    text: str
    bold: bool = False
    align: str = "left"  # left | center | right
    double: bool = False  # double height or width


@dataclass(frozen=True, slots=True)
class Page:
    lines: tuple[PrintedLine, ...]
    barcodes: tuple[tuple[str, str], ...] = ()  # (symbology, data)
    qr_codes: tuple[str, ...] = ()

    def text(self, *, width: int = 42) -> str:
        """The page as plain text, alignment applied (what a text file shows)."""
        out = []
        for line in self.lines:
            t = line.text
            if line.align == "center":
                t = t.center(width).rstrip()
            elif line.align == "right":
                t = t.rjust(width)
            out.append(t)
        return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class StatusRequest:
    command: str  # "dle_eot" | "gs_r"
    n: int


@dataclass(frozen=True, slots=True)
class DrawerKick:
    pin: int  # 2 or 5
    on_ms: int
    off_ms: int


Output = Page | StatusRequest | DrawerKick

BARCODE_A = {0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "NW7"}
BARCODE_B = {65 + k: v for k, v in BARCODE_A.items()} | {
    72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1-DATABAR", 76: "GS1-DATABAR-T",
    77: "GS1-DATABAR-L", 78: "GS1-DATABAR-E"}

# ESC x -> number of parameter bytes, for the simple fixed-length commands.
_ESC_ARGS = {ord("!"): 1, ord("-"): 1, ord("2"): 0, ord("3"): 1, ord("@"): 0, ord("E"): 1,
             ord("G"): 1, ord("M"): 1, ord("R"): 1, ord("V"): 1, ord("a"): 1, ord("d"): 1,
             ord("e"): 1, ord("J"): 1, ord("t"): 1, ord("r"): 1, ord("{"): 1, ord("="): 1,
             ord(" "): 1, ord("U"): 1, ord("$"): 2, ord("\\"): 2, ord("p"): 3, ord("B"): 2,
             ord("c"): 2, ord("i"): 0, ord("m"): 0, ord("A"): 1, ord("+"): 1, ord("%"): 1,
             ord("S"): 0, ord("L"): 0, ord("T"): 1, ord("W"): 8, ord("K"): 1}
_GS_ARGS = {ord("!"): 1, ord("B"): 1, ord("H"): 1, ord("f"): 1, ord("h"): 1, ord("w"): 1,
            ord("a"): 1, ord("b"): 1, ord("|"): 1, ord("L"): 2, ord("W"): 2, ord("P"): 2,
            ord("r"): 1, ord("I"): 1, ord("/"): 1, ord(":"): 0, ord("$"): 2, ord("\\"): 2,
            ord("^"): 3, ord("T"): 1}
_FS_ARGS = {ord("."): 0, ord("&"): 0, ord("!"): 1, ord("-"): 1, ord("C"): 1, ord("S"): 2,
            ord("W"): 1, ord("p"): 2}


@dataclass
class _Style:
    bold: bool = False
    align: str = "left"
    double: bool = False


@dataclass
class EscPosParser:
    encoding: str = "cp437"  # code page 0, the power-on default
    unknown: int = 0  # commands skipped without knowing them
    skipped_bytes: int = 0  # image data and oversized commands skipped by count
    _buf: bytearray = field(default_factory=bytearray)
    _skip: int = 0
    _style: _Style = field(default_factory=_Style)
    _line: bytearray = field(default_factory=bytearray)
    _line_style: _Style | None = None
    _lines: list[PrintedLine] = field(default_factory=list)
    _barcodes: list[tuple[str, str]] = field(default_factory=list)
    _qrs: list[str] = field(default_factory=list)
    _qr_data: bytes = b""

    @property
    def pending(self) -> int:
        return len(self._buf) + len(self._line)

    def feed(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            self.skipped_bytes += n
            data = data[n:]
        self._buf += data
        pos = 0
        buf = self._buf
        while pos < len(buf):
            used = self._step(buf, pos, out)
            if used == 0:  # incomplete command: wait for more bytes
                break
            pos += used
            if self._skip:  # an image body follows: drop what we have of it
                n = min(self._skip, len(buf) - pos)
                self._skip -= n
                self.skipped_bytes += n
                pos += n
        del buf[:pos]
        if len(buf) > MAX_BUFFER:  # a command claiming more than we will ever hold
            self.skipped_bytes += len(buf)
            self.unknown += 1
            buf.clear()
        return out

    def flush(self) -> Page | None:
        """The page so far without a cut (a client that closed without cutting)."""
        self._end_line(force=False)
        return self._page() if self._lines or self._barcodes or self._qrs else None

    # ---- one command ------------------------------------------------------------------------

    def _step(self, b: bytearray, i: int, out: list[Output]) -> int:
        c = b[i]
        avail = len(b) - i
        if c == ESC:
            return self._esc(b, i, avail, out)
        if c == GS:
            return self._gs(b, i, avail, out)
        if c == DLE:
            return self._dle(b, i, avail, out)
        if c == FS:
            if avail < 2:
                return 0
            n = _FS_ARGS.get(b[i + 1])
            if n is None:
                self.unknown += 1
                n = 0
            return 2 + n if avail >= 2 + n else 0
        if c == LF or c == FF:
            self._end_line(force=True)
        elif c == HT:
            self._text(b"    ")
        elif c >= 0x20:
            j = i
            while j < len(b) and b[j] >= 0x20:
                j += 1
            self._text(bytes(b[i:j]))
            return j - i
        return 1  # CR, NUL and other controls print nothing

    def _esc(self, b: bytearray, i: int, avail: int, out: list[Output]) -> int:
        if avail < 2:
            return 0
        cmd = b[i + 1]
        if cmd == ord("*"):  # bit image: ESC * m nL nH data
            if avail < 5:
                return 0
            dots = b[i + 3] + 256 * b[i + 4]
            self._skip = dots * (1 if b[i + 2] in (0, 1) else 3)
            return 5
        if cmd == ord("D"):  # tab positions, NUL-terminated
            end = b.find(0, i + 2)
            return 0 if end < 0 else end - i + 1
        n = _ESC_ARGS.get(cmd)
        if n is None:
            self.unknown += 1
            return 2
        if avail < 2 + n:
            return 0
        a = b[i + 2 : i + 2 + n]
        st = self._style
        if cmd == ord("@"):
            self._style = _Style()
        elif cmd in (ord("E"), ord("G")):
            st.bold = bool(a[0] & 1)
        elif cmd == ord("!"):
            st.bold = bool(a[0] & 0x08)
            st.double = bool(a[0] & 0x30)
        elif cmd == ord("a"):
            st.align = {0: "left", 1: "center", 2: "right"}.get(a[0] % 48, "left")
        elif cmd == ord("d"):
            self._end_line(force=True)
            for _ in range(max(0, a[0] - 1)):
                self._end_line(force=True)
        elif cmd == ord("p"):
            out.append(DrawerKick(5 if a[0] & 1 else 2, a[1] * 2, a[2] * 2))  # units of 2 ms
        elif cmd in (ord("i"), ord("m")):
            out.append(self._cut())
        return 2 + n

    def _gs(self, b: bytearray, i: int, avail: int, out: list[Output]) -> int:
        if avail < 2:
            return 0
        cmd = b[i + 1]
        if cmd == ord("V"):  # cut: GS V m, or GS V m n for m in 65, 66, 97, 98, 103, 104
            if avail < 3:
                return 0
            used = 4 if b[i + 2] >= 65 else 3
            if avail < used:
                return 0
            out.append(self._cut())
            return used
        if cmd == ord("k"):
            return self._barcode(b, i, avail)
        if cmd in (ord("("), ord("8")):  # GS ( x pL pH ... / GS 8 L p1..p4 ...
            hdr, size_len = (3, 2) if cmd == ord("(") else (3, 4)
            if avail < hdr + size_len:
                return 0
            size = int.from_bytes(b[i + hdr : i + hdr + size_len], "little")
            total = hdr + size_len + size
            if b[i + 2] == ord("k") and cmd == ord("(") and size <= MAX_BUFFER:
                if avail < total:
                    return 0
                self._qr(bytes(b[i + 5 : i + total]))
                return total
            self._skip = size  # graphics and other 2D data: count, do not buffer
            return hdr + size_len
        if cmd == ord("v"):  # raster image: GS v 0 m xL xH yL yH data
            if avail < 8:
                return 0
            self._skip = (b[i + 4] + 256 * b[i + 5]) * (b[i + 6] + 256 * b[i + 7])
            self._end_line(force=False)
            self._lines_add(PrintedLine("[image]"))
            return 8
        n = _GS_ARGS.get(cmd)
        if n is None:
            self.unknown += 1
            return 2
        if avail < 2 + n:
            return 0
        a = b[i + 2 : i + 2 + n]
        if cmd == ord("!"):
            self._style.double = bool(a[0])
        elif cmd == ord("r"):
            out.append(StatusRequest("gs_r", a[0] % 48))
        return 2 + n

    def _dle(self, b: bytearray, i: int, avail: int, out: list[Output]) -> int:
        if avail < 3:
            return 0
        cmd = b[i + 1]
        if cmd == 0x04:  # DLE EOT n
            out.append(StatusRequest("dle_eot", b[i + 2]))
            return 3
        if cmd == 0x05:  # DLE ENQ n: recovery request, nothing to render
            return 3
        if cmd == 0x14:  # DLE DC4 fn ...
            fn = b[i + 2]
            n = {1: 5, 2: 5, 7: 5, 8: 10}.get(fn, 3)
            if avail < n:
                return 0
            if fn == 1:
                out.append(DrawerKick(5 if b[i + 3] & 1 else 2, b[i + 4] * 100, b[i + 4] * 100))
            return n
        self.unknown += 1
        return 2

    def _barcode(self, b: bytearray, i: int, avail: int) -> int:
        if avail < 3:
            return 0
        m = b[i + 2]
        if m <= 6:  # function A: NUL-terminated data
            end = b.find(0, i + 3)
            if end < 0:
                return 0 if avail < MAX_BUFFER else avail
            data, used = bytes(b[i + 3 : end]), end - i + 1
        else:  # function B: length byte, then data
            if avail < 4 or avail < 4 + b[i + 3]:
                return 0
            data, used = bytes(b[i + 4 : i + 4 + b[i + 3]]), 4 + b[i + 3]
        symbology = BARCODE_A.get(m) or BARCODE_B.get(m) or f"type-{m}"
        text = data.decode("ascii", "replace")
        if symbology in ("CODE128", "GS1-128"):  # code-set selectors are not printed
            text = re.sub(r"\{[ABC1-4]", "", text).replace("{{", "{")
        self._end_line(force=False)
        self._barcodes.append((symbology, text))
        self._lines_add(PrintedLine(f"[{symbology} {text}]", align=self._style.align))
        return used

    def _qr(self, body: bytes) -> None:
        # body = cn fn [m] data. cn 49 = QR; fn 80 stores data (after m), fn 81 prints it.
        if len(body) < 2 or body[0] != 49:
            return
        if body[1] == 80:
            self._qr_data = body[3:]
        elif body[1] == 81 and self._qr_data:
            text = self._qr_data.decode("utf-8", "replace")
            self._end_line(force=False)
            self._qrs.append(text)
            self._lines_add(PrintedLine(f"[QR {text}]", align=self._style.align))

    # ---- page building -----------------------------------------------------------------

    def _text(self, raw: bytes) -> None:
        if not self._line:
            self._line_style = _Style(self._style.bold, self._style.align, self._style.double)
        elif self._style.bold and self._line_style is not None:
            self._line_style.bold = True  # a line with any bold part reads as bold
        if len(self._line) < MAX_BUFFER:
            self._line += raw[: MAX_BUFFER - len(self._line)]

    def _end_line(self, *, force: bool) -> None:
        if not self._line and not force:
            return
        st = self._line_style or self._style
        self._lines_add(PrintedLine(self._line.decode(self.encoding, "replace").rstrip(),
                                    st.bold, st.align, st.double))
        self._line.clear()
        self._line_style = None

    def _lines_add(self, line: PrintedLine) -> None:
        if len(self._lines) < 10_000:  # a page longer than this is a runaway client
            self._lines.append(line)

    def _cut(self) -> Page:
        self._end_line(force=False)
        return self._page()

    def _page(self) -> Page:
        lines = list(self._lines)
        while lines and not lines[-1].text:  # the feed before a cut is not content
            lines.pop()
        page = Page(tuple(lines), tuple(self._barcodes), tuple(self._qrs))
        self._lines.clear()
        self._barcodes.clear()
        self._qrs.clear()
        return page


# ---- status bytes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrinterState:
    paper: str = "ok"  # ok | near_end | out
    cover_open: bool = False
    drawer_open: bool = False
    error: bool = False

    @property
    def offline(self) -> bool:
        return self.cover_open or self.paper == "out" or self.error

    def status_byte(self, request: StatusRequest) -> bytes:
        """The printer's answer to a status query (empty for an unknown one)."""
        if request.command == "gs_r":
            if request.n == 1:
                return bytes(((0x03 if self.paper != "ok" else 0)
                              | (0x0C if self.paper == "out" else 0),))
            if request.n == 2:
                return bytes((1 if self.drawer_open else 0,))
            return b""
        n, v = request.n, STATUS_BASE
        if n == 1:
            v |= (0x04 if self.drawer_open else 0) | (0x08 if self.offline else 0)
        elif n == 2:
            v |= ((0x04 if self.cover_open else 0) | (0x20 if self.paper == "out" else 0)
                  | (0x40 if self.error else 0))
        elif n == 3:
            v |= 0x40 if self.error else 0
        elif n == 4:
            v |= (0x0C if self.paper != "ok" else 0) | (0x60 if self.paper == "out" else 0)
        else:
            return b""
        return bytes((v,))


class StatusByteError(ValueError):
    """A status reply that does not have the fixed bits of a DLE EOT answer."""


def parse_status(printer: int, offline_cause: int, paper: int) -> PrinterState:
    """Combine the answers to DLE EOT 1, 2 and 4 into one ``PrinterState``."""
    for value in (printer, offline_cause, paper):
        if value & 0x93 != STATUS_BASE:  # bits 0, 1, 4, 7 are fixed in every answer
            raise StatusByteError(f"not a DLE EOT status byte: {value:#04x}")
    if paper & 0x60:
        paper_state = "out"
    elif paper & 0x0C:
        paper_state = "near_end"
    else:
        paper_state = "ok"
    return PrinterState(paper=paper_state, cover_open=bool(offline_cause & 0x04),
                        drawer_open=bool(printer & 0x04), error=bool(offline_cause & 0x40))
