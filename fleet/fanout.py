"""``fleet cmd --all|--region R|--group G|--store S DEVICE NAME``: one command to many
stores (decision 0061), called from ``fleet.cli.cmd``.

One POST to ``/api/v1/fleet/commands`` with an ``Idempotency-Key`` made here, sent
again with the same key once if the connection failed (the cloud may have made the
fan-out before the answer was lost: the retry answers it, it does not send a second),
then a progress bar on stderr following ``GET /api/v1/fleet/commands/{id}`` until every
store answered, the commands expired or ``--wait`` ran out. The final counts and the
first failures print as JSON; the exit code says how it went (``fleet.output.Exit``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from fleet.output import Exit

if TYPE_CHECKING:
    from fleet.client import FleetClient

POLL_S = 1.0  # one GROUP BY on the cloud per second: cheap, and a bar that moves
FAILURES_SHOWN = 20  # the rest: GET /api/v1/fleet/commands/{id}/failures


def selection(*, everything: bool, stores: list[str], regions: list[str],
              groups: list[str]) -> dict[str, Any] | None:
    """The API's selection, or None when none was given (a single-store command)."""
    if everything:
        return {"all": True}
    if stores or regions or groups:
        return {"stores": stores, "regions": regions, "groups": groups}
    return None


def _send(c: FleetClient, name: str, chosen: dict[str, Any], **kw: Any) -> dict[str, Any]:
    from fleet.client import FleetError

    key = str(uuid.uuid4())
    try:
        return c.send_fleet_command(name, chosen, idempotency_key=key, **kw)
    except FleetError as err:
        if err.status != 0:  # the cloud answered: nothing to retry
            raise
        return c.send_fleet_command(name, chosen, idempotency_key=key, **kw)


def run(c: FleetClient, name: str, chosen: dict[str, Any], *, device: str,
        args: dict[str, Any], reason: str | None, ttl_s: int, wait: float) -> dict[str, Any]:
    """Send, follow until done or ``wait`` runs out; the fan-out with its first failures."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    fanout = _send(c, name, chosen, args=args, target=device, ttl_s=ttl_s, reason=reason)
    deadline = time.monotonic() + wait
    total = int(fanout["stores"])
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"{name} to {total} store(s)", total=total, counts="")
        while True:
            counts = fanout["counts"]
            bar.update(task, completed=total - counts["sent"],
                       counts=f"ok {counts['ok']} failed {counts['failed']} "
                              f"expired {counts['expired']}")
            if fanout["done"] or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
            fanout = c.fleet_command(fanout["fanout_id"])
    counts = fanout["counts"]
    failures = (c.fleet_command_failures(fanout["fanout_id"], limit=FAILURES_SHOWN)
                if counts["failed"] or counts["expired"] else [])
    return {**fanout, "failures": failures}


def exit_code(fanout: dict[str, Any]) -> Exit:
    counts = fanout["counts"]
    if counts["sent"]:
        return Exit.TIMEOUT
    if counts["failed"] or counts["expired"]:
        return Exit.NOT_OK
    return Exit.OK
