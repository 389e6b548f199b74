"""Plain jobs rendered with python-escpos' ``Dummy`` printer (bytes, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

from escpos.printer import Dummy


def new_job() -> Dummy:
    """A python-escpos printer that collects bytes; ``.output`` is the job."""
    job = Dummy()
    job.hw("INIT")  # ESC @: every job starts from the power-on style, whatever came before
    return job


def render_lines(lines: Iterable[str], *, cut: bool = True) -> bytes:
    job = new_job()
    for line in lines:
        job.textln(line)
    if cut:
        job.cut()
    return bytes(job.output)
