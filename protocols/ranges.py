"""HTTP ``Range`` (RFC 9110) as the cloud's artifact route and the store's peer cache
answer it (decisions 0036, 0049): one range of the three forms, anything else ignored."""

from __future__ import annotations

import re


class RangeNotSatisfiable(Exception):
    """A range past the end: answered 416 with ``Content-Range: bytes */<size>``."""


# One range of the three forms RFC 9110 defines: first-last, first-, -suffix length.
_ONE_RANGE = re.compile(r"^bytes=(?:(\d+)-(\d*)|-(\d+))$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` that ``Range: header`` asks of a ``size``-byte blob; None for
    the whole blob (no header, several ranges, or one we do not parse: RFC 9110 lets a
    server ignore those); ``RangeNotSatisfiable`` for a range past the end."""
    match = _ONE_RANGE.match((header or "").replace(" ", ""))
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        if int(suffix) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - int(suffix), 0), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size:
        raise RangeNotSatisfiable
    if start >= end:
        return None  # last before first: not a valid range, so ignored
    return start, end
