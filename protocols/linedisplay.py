"""Customer line display (2 x 20 VFD, Epson ESC/POS display command set). No I/O.

Commands the display understands (and ``Screen`` emulates):

=============  ===========  ==============================================
bytes          name         effect
=============  ===========  ==============================================
1B 40          ESC @        initialise: clear, cursor home
0C             FF           clear screen, cursor home
1F 24 x y      US $ x y     cursor to column x (1..20), row y (1..2)
0D / 0A        CR / LF      cursor to column 1 / down one row
08 / 09        BS / HT      cursor left / right
1F 43 n        US C n       cursor visible on/off (no effect on the text)
0x20..0x7E     text         written at the cursor, which advances (overwrite mode)
=============  ===========  ==============================================

Any other ESC/US command is skipped (2 bytes, or 3 for US + letter) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROWS, COLS = 2, 20
ESC, US, FF, CR, LF, BS, HT = 0x1B, 0x1F, 0x0C, 0x0D, 0x0A, 0x08, 0x09


def fit(text: str) -> str:
    """What one row can show: ASCII only (the display's code page 0 is not Unicode)."""
    return "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text)[:COLS].ljust(COLS)


def show_bytes(line1: str, line2: str = "") -> bytes:
    return (bytes((FF, US, 0x24, 1, 1)) + fit(line1).encode("ascii")
            + bytes((US, 0x24, 1, 2)) + fit(line2).encode("ascii"))


def two_columns(left: str, right: str) -> str:
    """``left`` cut to leave room for ``right`` on one 20-column row."""
    room = COLS - len(right) - 1
    return f"{left[:room]:<{room}} {right}"[:COLS]


@dataclass
class Screen:
    rows: list[list[str]] = field(default_factory=lambda: [[" "] * COLS for _ in range(ROWS)])
    x: int = 0
    y: int = 0
    unknown: int = 0
    _pending: bytearray = field(default_factory=bytearray)

    def lines(self) -> tuple[str, ...]:
        return tuple("".join(r) for r in self.rows)

    def _clear(self) -> None:
        self.rows = [[" "] * COLS for _ in range(ROWS)]
        self.x = self.y = 0

    def feed(self, data: bytes) -> None:
        buf = self._pending + data
        i = 0
        while i < len(buf):
            c = buf[i]
            if c == ESC:
                if i + 1 >= len(buf):
                    break
                if buf[i + 1] == 0x40:
                    self._clear()
                else:
                    self.unknown += 1
                i += 2
            elif c == US:
                if i + 1 >= len(buf):
                    break
                if buf[i + 1] == 0x24:
                    if i + 3 >= len(buf):
                        break
                    self.x = min(max(buf[i + 2], 1), COLS) - 1
                    self.y = min(max(buf[i + 3], 1), ROWS) - 1
                    i += 4
                    continue
                if buf[i + 1] != 0x43:
                    self.unknown += 1
                if i + 2 >= len(buf):
                    break
                i += 3
            else:
                self._char(c)
                i += 1
        self._pending = bytearray(buf[i:][:8])  # an unfinished command is never longer

    def _char(self, c: int) -> None:
        if c == FF:
            self._clear()
        elif c == CR:
            self.x = 0
        elif c == LF:
            self.y = min(self.y + 1, ROWS - 1)
        elif c == BS:
            self.x = max(self.x - 1, 0)
        elif c == HT:
            self.x = min(self.x + 1, COLS - 1)
        elif 0x20 <= c < 0x7F:
            self.rows[self.y][self.x] = chr(c)
            if self.x < COLS - 1:
                self.x += 1
            elif self.y < ROWS - 1:
                self.x, self.y = 0, self.y + 1
