"""``Receipt`` -> ESC/POS bytes, rendered with python-escpos (``Dummy`` collects bytes).

Layout for a ``width``-column printer (42 = Font A on most 80 mm models): centred bold
header, one row per line (name left, amount right; ``qty x unit`` on a second row when
qty > 1), adjustments, a bold double-height TOTAL, tenders, then the optional CODE128
barcode and QR code (printed natively by the printer), the footer and a cut.
"""

from __future__ import annotations

from collections.abc import Iterable

from escpos.constants import QR_ECLEVEL_M

from edge_agent.drivers.printer.render import new_job, render_lines
from edge_agent.pos.receipt import Receipt, money


def _row(left: str, right: str, width: int) -> str:
    room = width - len(right) - 1
    return f"{left[:room]:<{room}} {right}"


def render_receipt(receipt: Receipt, *, width: int = 42) -> bytes:
    m = receipt.minor_digits
    job = new_job()
    job.set(align="center", bold=True)
    for head in receipt.header:
        job.textln(head[:width])
    job.set(align="left", bold=False)
    job.textln(_row(receipt.receipt_id, receipt.currency, width))
    job.textln("-" * width)
    for line in receipt.lines:
        job.textln(_row(line.name, money(line.amount, minor_digits=m), width))
        if line.qty > 1:
            job.textln(f"  {line.qty} x {money(line.unit_price, minor_digits=m)}")
    job.textln("-" * width)
    job.textln(_row("Subtotal", money(receipt.totals.subtotal, minor_digits=m), width))
    for adj in receipt.adjustments:
        job.textln(_row(adj.label, money(adj.amount, minor_digits=m), width))
    job.set(bold=True, double_height=True)
    job.textln(_row("TOTAL", money(receipt.totals.total, minor_digits=m), width))
    job.set(bold=False, double_height=False, normal_textsize=True)
    if receipt.totals.tax:
        job.textln(_row("incl. tax", money(receipt.totals.tax, minor_digits=m), width))
    for tender in receipt.tenders:
        job.textln(_row(tender.method, money(tender.amount, minor_digits=m), width))
    if receipt.change:
        job.textln(_row("Change", money(receipt.change, minor_digits=m), width))
    if receipt.barcode:
        # _hw_barcode is what barcode() calls for a printer-rendered code; barcode()
        # itself prints "Using hardware barcode renderer" to stdout on every call.
        job._hw_barcode("{B" + receipt.barcode, "CODE128", 64, 2, "BELOW", "A", True, "B",
                        True)
    if receipt.qr:
        job.set(align="center")
        job.qr(receipt.qr, ec=QR_ECLEVEL_M, size=4, native=True)
    job.set(align="center")
    for foot in receipt.footer:
        job.textln(foot[:width])
    job.cut()
    return bytes(job.output)


def render_ticket(lines: Iterable[str], *, width: int = 42) -> bytes:
    """A plain ticket (kitchen/pick list for an online order): lines, then a cut."""
    return render_lines([line[:width] for line in lines])
