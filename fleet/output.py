"""How ``fleet`` prints: rich tables for people, JSON for scripts, and its exit codes.

rich is imported inside the functions that draw, so that ``fleet --help`` stays fast.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

import typer


class Exit(IntEnum):
    """``fleet``'s exit codes (also printed by ``fleet --help``)."""

    OK = 0
    FAILED = 1  # the cloud answered with an error of its own, or not as the API
    USAGE = 2  # a bad option or argument (click's own code)
    NOT_OK = 3  # the command reached the box and did not succeed (rejected, error, ...)
    TIMEOUT = 4  # no result within --wait: the box did not answer (yet)
    UNREACHABLE = 5  # no answer from the cloud API at all
    AUTH = 6  # a missing or unknown token (401) or a role that may not (403)
    NOT_FOUND = 7  # no such store, device or command


EPILOG = (
    "Exit codes: 0 ok; 1 the cloud API answered with an error; 2 usage; 3 the command "
    "ran on the box and did not succeed; 4 no answer within --wait; 5 the cloud API cannot "
    "be reached; 6 bad or missing token, or a role that may not; 7 no such store, device "
    "or command. API and token: --api/--token, else STOREFLEET_API/STOREFLEET_TOKEN, else "
    "what `fleet login` saved."
)


def exit_for_status(status: int) -> Exit:
    """The exit code for a failed API call's HTTP status (0: no answer)."""
    if status == 0:
        return Exit.UNREACHABLE
    if status in (401, 403):
        return Exit.AUTH
    if status == 404:
        return Exit.NOT_FOUND
    return Exit.FAILED


def fail(message: str, code: Exit) -> typer.Exit:
    """One line on stderr; returns the ``typer.Exit`` to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(int(code))


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title)
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*(cell(row.get(c)) for c in columns))
    Console().print(out)


def fields(values: dict[str, Any], title: str) -> None:
    """A two-column table: one row per field."""
    table([{"field": k, "value": v} for k, v in values.items()], ["field", "value"], title)


def shadow_rows(desired: dict[str, Any] | None,
                reported: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per key of either side; ``differs`` when the store has not applied it
    (a desired ``null`` deletes the key: applied once the store no longer reports it)."""
    desired, reported = desired or {}, reported or {}
    rows = []
    for key in sorted(set(desired) | set(reported)):
        want, have = desired.get(key), reported.get(key)
        if want is None:
            differs = key in desired and key in reported
        else:
            differs = want != have
        rows.append({"key": key, "desired": want if key in desired else None,
                     "reported": have if key in reported else None, "differs": differs})
    return rows


def shadow_table(shadow: dict[str, Any], title: str) -> None:
    """Desired against reported, the keys the store has not caught up on in red."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"{title} (desired v{shadow.get('desired_version')}, reported "
                      f"v{shadow.get('reported_version')})")
    for col in ("key", "desired", "reported", ""):
        out.add_column(col)
    for row in shadow_rows(shadow.get("desired"), shadow.get("reported")):
        style = "bold red" if row["differs"] else None
        out.add_row(row["key"], cell(row["desired"]), cell(row["reported"]),
                    "≠" if row["differs"] else "", style=style)
    Console().print(out)
