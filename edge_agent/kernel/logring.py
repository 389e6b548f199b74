"""The agent's recent log lines, in memory, for ``fleet logs`` (decision 0038).

A field tech asks a box for its recent lines over the command channel (``get_logs``)
instead of logging in to it. ``LogRing`` is a ``logging.Handler`` holding the last
``capacity`` records as small formatted dicts: bounded in count and in line length, so a
chatty driver can neither grow the agent's memory nor make a reply larger than the
cloud's payload cap. Every line gets a sequence number; a reader passes the last one it
saw (``since``) and gets only newer lines, which is how ``fleet logs --follow`` polls
without repeats. Lines evicted before a reader came back are not silent: the reply says
how many it missed (``missed``).

The handler is attached to the root logger for the agent's lifetime (``attached()``),
so it sees the agent's own lines and those of the libraries it runs (aiomqtt, amqtt).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

DEFAULT_CAPACITY = 2000  # about 20 minutes of a busy box at INFO; ~1 MB at the line cap
MAX_LINE_CHARS = 500  # 200 lines (the reply cap) x 500 chars stays far under 256 KiB
MAX_LINES = 200  # per reply; the command result travels as one MQTT message


class LogRing(logging.Handler):
    """The last ``capacity`` log records, each with a sequence number."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(level=logging.NOTSET)
        # (levelno, line): the number filters, the line is what a reader gets
        self._lines: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=capacity)
        self._seq = 0
        # emit() runs on whichever thread logs (the storage thread, to_thread workers)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                err = record.exc_info[1]
                message += f" [{type(err).__name__}: {err}]"
        except Exception:  # a bad %-format in someone's log call: logging's own report
            self.handleError(record)
            return
        line = {"ts": int(record.created * 1000), "level": record.levelname,
                "logger": record.name, "message": message[:MAX_LINE_CHARS]}
        with self._guard:
            self._seq += 1
            line["seq"] = self._seq
            self._lines.append((record.levelno, line))

    def lines(self, *, since: int = 0, level: int = logging.NOTSET,
              limit: int = 100) -> dict[str, Any]:
        """Lines after sequence ``since`` at ``level`` or above, the newest ``limit``.

        ``last_seq`` is the cursor for the next call; ``skipped`` counts matching lines
        left out by ``limit``; ``missed`` counts lines (any level) evicted after
        ``since`` before this call, so a slow follower knows it has a gap.
        """
        with self._guard:
            snapshot = list(self._lines)
            last_seq = self._seq
        oldest = snapshot[0][1]["seq"] if snapshot else last_seq + 1
        missed = max(0, oldest - since - 1) if since else 0
        matching = [ln for levelno, ln in snapshot if ln["seq"] > since and levelno >= level]
        kept = matching[-limit:] if limit else []
        return {"lines": kept, "last_seq": last_seq,
                "skipped": len(matching) - len(kept), "missed": missed}

    @contextlib.contextmanager
    def attached(self, logger: logging.Logger | None = None) -> Iterator[LogRing]:
        """Collect ``logger``'s records (the root logger's by default) while inside."""
        target = logger or logging.getLogger()
        target.addHandler(self)
        try:
            yield self
        finally:
            target.removeHandler(self)
