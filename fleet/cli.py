"""``fleet``: what a field tech types. A thin layer over ``fleet.client.FleetClient``."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet.client import FleetClient, FleetError

app = typer.Typer(
    help="storefleet field-tech CLI: look at stores and devices, send commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

ApiOpt = Annotated[str, typer.Option("--api", envvar="STOREFLEET_API", help="cloud API base URL")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="STOREFLEET_TOKEN", help="API bearer token")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
DEFAULT_API = "http://127.0.0.1:8000"


def _client(api: str, token: str | None) -> FleetClient:
    return FleetClient(api, token=token)


def _fail(err: FleetError) -> typer.Exit:
    console.print(f"[red]error:[/red] {err}")
    return typer.Exit(1)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


@app.command()
def stores(api: ApiOpt = DEFAULT_API, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List stores with their online status."""
    try:
        with _client(api, token) as c:
            rows = c.stores()
    except FleetError as err:
        raise _fail(err) from err
    if as_json:
        typer.echo(json.dumps(rows))
        return
    _table(
        rows,
        ["store_id", "online", "bd_seq", "agent_version", "devices_online", "devices"],
        "stores",
    )


@app.command()
def devices(
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List devices with their online status."""
    try:
        with _client(api, token) as c:
            rows = c.devices(store)
    except FleetError as err:
        raise _fail(err) from err
    if as_json:
        typer.echo(json.dumps(rows))
        return
    _table(rows, ["store_id", "device_id", "kind", "online", "model", "fw"], "devices")


@app.command()
def cmd(
    store: Annotated[str, typer.Argument(help="store id")],
    name: Annotated[str, typer.Argument(help="ping | get_diagnostics | set_log_level | rebirth")],
    arg: Annotated[list[str] | None, typer.Option("--arg", help="key=value (repeatable)")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the result")] = 10.0,
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
) -> None:
    """Send a command to a store's agent and print its result."""
    args: dict[str, Any] = {}
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--arg {item!r} is not key=value")
        args[key] = value
    try:
        with _client(api, token) as c:
            sent = c.send_command(store, name, args=args)
            deadline = time.monotonic() + wait
            result = c.command(sent["cmd_id"])
            while result.get("status") == "pending" and time.monotonic() < deadline:
                time.sleep(0.2)
                result = c.command(sent["cmd_id"])
    except FleetError as err:
        raise _fail(err) from err
    typer.echo(json.dumps(result, indent=2))
    if result.get("status") not in ("ok",):
        raise typer.Exit(2)


def main() -> None:
    app(prog_name="fleet")
