"""``Receipt`` -> ESC/POS bytes, rendered with python-escpos (``Dummy`` collects bytes).

Layout for a ``width``-column printer (42 = Font A on most 80 mm models): the store
(bold name, address, tax id line) and any header lines centred; date and time, till and
sale number, cashier, the sale id; one row per line (name left, amount right;
``qty x unit`` on a second row when qty > 1), adjustments, a bold double-height TOTAL,
tenders and change; for a member's sale the masked member id, points earned and used
and the balance after the sale when the till knows it ("pending" offline); then the
optional CODE128 barcode and QR code (printed natively by the printer), the footer and
a cut.
"""

from __future__ import annotations

from collections.abc import Iterable

from escpos.constants import QR_ECLEVEL_M

from edge_agent.drivers.printer.render import new_job, render_lines
from edge_agent.pos.receipt import MemberPoints, Receipt, money

# Printed as "2026-01-15 14:03:07 CET": ISO order reads the same in every country.
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def _row(left: str, right: str, width: int) -> str:
    room = width - len(right) - 1
    return f"{left[:room]:<{room}} {right}"


def render_receipt(receipt: Receipt, *, width: int = 42) -> bytes:
    m = receipt.minor_digits
    job = new_job()
    if receipt.store is not None:
        job.set(align="center", bold=True)
        job.textln(receipt.store.name[:width])
        job.set(bold=False)
        for address_line in receipt.store.address:
            job.textln(address_line[:width])
        if receipt.store.tax_line:
            job.textln(receipt.store.tax_line[:width])
    job.set(align="center", bold=True)
    for head in receipt.header:
        job.textln(head[:width])
    job.set(align="left", bold=False)
    for row in _context_rows(receipt, width):
        job.textln(row)
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
    if receipt.member is not None:
        job.textln("-" * width)
        for row in _member_rows(receipt.member, width):
            job.textln(row)
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


def _context_rows(receipt: Receipt, width: int) -> list[str]:
    """When, where and by whom: the rows an auditor matches against the till's records."""
    rows = []
    if receipt.issued_at is not None:
        rows.append(receipt.issued_at.strftime(_TIME_FORMAT)[:width])
    till = f"Till {receipt.till_id}" if receipt.till_id else ""
    number = f"Sale {receipt.sale_number}" if receipt.sale_number else ""
    if till or number:
        rows.append(_row(till, number, width))
    if receipt.cashier:
        rows.append(f"Cashier {receipt.cashier}"[:width])
    return rows


def _member_rows(member: MemberPoints, width: int) -> list[str]:
    rows = [_row("Member", member.masked_id, width),
            _row("Points earned", f"+{member.points_earned}", width)]
    if member.points_used:
        rows.append(_row("Points used", f"-{member.points_used}", width))
    if member.pending:
        rows.append(_row("Points balance", "pending", width))
    elif member.balance is not None:
        rows.append(_row("Points balance", str(member.balance), width))
    return rows


def render_ticket(lines: Iterable[str], *, width: int = 42) -> bytes:
    """A plain ticket (kitchen/pick list for an online order): lines, then a cut."""
    return render_lines([line[:width] for line in lines])
