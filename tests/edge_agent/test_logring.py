"""The agent's in-memory log ring behind ``get_logs`` (edge_agent/kernel/logring.py).

Through a real logger, and the kernel command through its argument model; the whole
path from the cloud to a running agent is tested by ``fleet logs`` in tests/fleet.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edge_agent.kernel.builtin import GetLogsArgs, kernel_commands
from edge_agent.kernel.logring import MAX_LINE_CHARS, LogRing


def _logger(name: str) -> logging.Logger:
    log = logging.getLogger(f"tests.logring.{name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False  # only the ring sees these lines
    return log


def test_lines_after_a_cursor_filtered_by_level_and_limited() -> None:
    ring = LogRing(capacity=100)
    log = _logger("cursor")
    with ring.attached(log):
        log.debug("d1")
        log.warning("w1 %s", "store S001")
        log.info("i1")
        log.error("e1")
    log.error("after detaching: not kept")

    every = ring.lines()
    assert [ln["message"] for ln in every["lines"]] == ["d1", "w1 store S001", "i1", "e1"]
    assert [ln["seq"] for ln in every["lines"]] == [1, 2, 3, 4] and every["last_seq"] == 4
    assert every["lines"][1]["level"] == "WARNING"
    assert every["lines"][1]["logger"] == "tests.logring.cursor"

    warnings = ring.lines(level=logging.WARNING)
    assert [ln["message"] for ln in warnings["lines"]] == ["w1 store S001", "e1"]

    newest = ring.lines(limit=1)
    assert [ln["message"] for ln in newest["lines"]] == ["e1"] and newest["skipped"] == 3

    after = ring.lines(since=2)
    assert [ln["seq"] for ln in after["lines"]] == [3, 4] and after["missed"] == 0
    assert ring.lines(since=4)["lines"] == []


def test_bounded_in_count_and_line_length_and_a_gap_is_reported() -> None:
    ring = LogRing(capacity=3)
    log = _logger("bounded")
    with ring.attached(log):
        for i in range(10):
            log.info("line %d", i)
        log.info("x" * (MAX_LINE_CHARS * 3))
    got = ring.lines(since=2)
    assert [ln["seq"] for ln in got["lines"]] == [9, 10, 11]
    assert got["missed"] == 6  # lines 3..8 were evicted before this reader came back
    assert len(got["lines"][-1]["message"]) == MAX_LINE_CHARS


def test_an_exception_is_named_on_its_line() -> None:
    ring = LogRing()
    log = _logger("exc")
    with ring.attached(log):
        try:
            raise ConnectionError("broker gone")
        except ConnectionError:
            log.exception("uplink failed")
    (line,) = ring.lines()["lines"]
    assert line["message"] == "uplink failed [ConnectionError: broker gone]"
    assert line["level"] == "ERROR"


async def test_get_logs_command_validates_its_arguments() -> None:
    ring = LogRing()
    log = _logger("command")

    async def rebirth() -> int:
        return 1

    def diagnostics() -> dict[str, Any]:
        return {}

    spec = kernel_commands(now_ms=lambda: 0, diagnostics=diagnostics, rebirth=rebirth,
                           logs=ring)["get_logs"]
    with ring.attached(log):
        log.info("kept")
        log.warning("warned")
    got = await spec.run(spec.args.model_validate({"level": "warning", "limit": 5}))
    assert [ln["message"] for ln in got["lines"]] == ["warned"]
    for bad in ({"level": "LOUD"}, {"limit": 0}, {"limit": 10_000}, {"since": -1},
                {"colour": "red"}):
        with pytest.raises(ValueError):
            GetLogsArgs.model_validate(bad)
