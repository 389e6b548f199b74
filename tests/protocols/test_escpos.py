"""ESC/POS parser, status bytes, AIM scanner framing and the line display (pure)."""

from __future__ import annotations

from typing import cast

from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import aim, escpos, linedisplay


def test_python_escpos_output_parses_to_a_page() -> None:
    p = Dummy()
    p.set(align="center", bold=True)
    p.textln("SHOP")
    p.set(align="right", bold=False)
    p.textln("9.99")
    p._hw_barcode("4006381333931", "EAN13", 64, 3, "BELOW", "A", True, None, True)
    p.qr("https://x.example/1", native=True)
    p.cashdraw(5)
    p.cut()
    out = escpos.EscPosParser().feed(bytes(p.output))
    kick, page = out
    assert kick == escpos.DrawerKick(pin=5, on_ms=100, off_ms=100)
    assert isinstance(page, escpos.Page)
    assert page.lines[0] == escpos.PrintedLine("SHOP", bold=True, align="center")
    assert page.lines[1].align == "right"
    assert page.barcodes == (("EAN13", "4006381333931"),)
    assert page.qr_codes == ("https://x.example/1",)
    assert page.text(width=10).splitlines()[:2] == ["   SHOP", "      9.99"]


def test_status_queries_and_answers_roundtrip() -> None:
    parser = escpos.EscPosParser()
    out = parser.feed(b"\x10\x04\x01\x10\x04\x02\x10\x04\x04\x1dr\x01")
    assert out == [escpos.StatusRequest("dle_eot", 1), escpos.StatusRequest("dle_eot", 2),
                   escpos.StatusRequest("dle_eot", 4), escpos.StatusRequest("gs_r", 1)]
    requests = cast(list[escpos.StatusRequest], out)  # checked just above
    for state in (escpos.PrinterState(), escpos.PrinterState(paper="out", drawer_open=True),
                  escpos.PrinterState(paper="near_end", cover_open=True)):
        answers = [state.status_byte(r)[0] for r in requests[:3]]
        assert escpos.parse_status(*answers) == state
    # python-escpos' own masks read our answers the same way
    from escpos.constants import RT_MASK_NOPAPER
    answer = escpos.PrinterState(paper="out").status_byte(requests[2])[0]
    assert answer & RT_MASK_NOPAPER == RT_MASK_NOPAPER


def test_unknown_commands_and_images_are_skipped_not_printed() -> None:
    parser = escpos.EscPosParser()
    image = b"\x1dv0\x00\x02\x00\x03\x00" + b"\xff" * 6
    data = b"\x1b\x99A\x1d\x98B" + image + b"text\n\x1dV\x00"
    (page,) = parser.feed(data)
    assert isinstance(page, escpos.Page)
    assert [x.text for x in page.lines] == ["AB", "[image]", "text"]
    assert parser.unknown == 2 and parser.skipped_bytes == 6


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_in_any_chunks_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    parser = escpos.EscPosParser()
    for chunk in chunks:
        parser.feed(chunk)
        assert parser.pending <= 2 * escpos.MAX_BUFFER
    parser.flush()


def test_huge_image_is_counted_not_buffered() -> None:
    parser = escpos.EscPosParser()
    parser.feed(b"\x1dv0\x00\xff\x00\xff\x00")  # 255 x 255 raster bytes follow
    for _ in range(100):
        parser.feed(b"\x00" * 1000)
        assert parser.pending == 0
    (page,) = parser.feed(b"\x1dV\x00")
    assert isinstance(page, escpos.Page)
    assert parser.skipped_bytes == 65025 and page.lines[0].text == "[image]"


def test_aim_lines() -> None:
    d = aim.ScanDecoder()
    out = d.feed(b"]E0012345678905\r\n]E440063813\r]C1(01)0950\r" + b"]Zfoo\r")
    assert [(s.data, s.symbology) for s in out if isinstance(s, aim.Scan)] == [
        ("012345678905", "UPC-A"), ("40063813", "EAN8"), ("(01)0950", "GS1-128")]
    assert [r.reason for r in out if isinstance(r, aim.Rejected)] == ["bad_prefix"]
    assert d.feed(b"plain\r") == [aim.Scan("plain", "UNKNOWN")]
    assert d.feed(b"\x00\x01\r")[0] == aim.Rejected("not_text", 2)


def test_line_display_screen() -> None:
    screen = linedisplay.Screen()
    data = b"\x1b@" + linedisplay.show_bytes("Cola", "TOTAL 2.50")
    for i in range(len(data)):  # byte by byte: commands split across reads
        screen.feed(data[i : i + 1])
    assert screen.lines() == ("Cola".ljust(20), "TOTAL 2.50".ljust(20))
    screen.feed(b"\x1f\x24\x15\x09X\x1b\x77")  # cursor clamped to the screen; unknown ESC
    assert screen.lines()[1][19] == "X" and screen.unknown == 1
