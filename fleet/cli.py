"""``fleet``: what a field tech types. A thin layer over ``fleet.client.FleetClient``.

The client (httpx) and rich's tables are imported inside the commands, so that ``fleet
--help`` starts as fast as typer allows. Errors are one line on stderr and exit 1, never
a traceback: a wrong token, an API that is not there, a store that does not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fleet import artifacts, provision

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(
    help="storefleet field-tech CLI: look at stores and devices, send commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(artifacts.app, name="artifact")

ApiOpt = Annotated[str, typer.Option("--api", envvar="STOREFLEET_API", help="cloud API base URL")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="STOREFLEET_TOKEN", help="API bearer token")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
DEFAULT_API = "http://127.0.0.1:8000"

STORE_COLUMNS = ["store_id", "online", "bd_seq", "agent_version", "devices_online",
                 "devices_total"]
DEVICE_COLUMNS = ["store_id", "device_id", "kind", "online", "model", "fw"]

T = TypeVar("T")


def _call(api: str, token: str | None, fn: Callable[[FleetClient], T]) -> T:
    """Run ``fn`` with a client; a ``FleetError`` becomes one line on stderr and exit 1."""
    from fleet.client import FleetClient, FleetError

    try:
        with FleetClient(api, token=token) as client:
            return fn(client)
    except FleetError as err:
        hint = ""
        if err.status == 401:
            hint = " (pass a valid --token or set STOREFLEET_TOKEN)"
        elif err.status == 0:
            hint = " (is --api / STOREFLEET_API right, and the API running?)"
        typer.echo(f"error: {err}{hint}", err=True)
        raise typer.Exit(1) from err


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


@app.command()
def stores(api: ApiOpt = DEFAULT_API, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List stores with their online status and device counts."""
    rows = _call(api, token, lambda c: c.stores())
    if as_json:
        typer.echo(json.dumps(rows))
        return
    _table(rows, STORE_COLUMNS, "stores")


@app.command()
def devices(
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List devices with their online status."""
    rows = _call(api, token, lambda c: c.devices(store))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    _table(rows, DEVICE_COLUMNS, "devices")


@app.command()
def cmd(
    store: Annotated[str, typer.Argument(help="store id")],
    name: Annotated[str, typer.Argument(help="ping | get_diagnostics | set_log_level | rebirth")],
    arg: Annotated[list[str] | None, typer.Option("--arg", help="key=value (repeatable)")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the result")] = 10.0,
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
) -> None:
    """Send a command to a store's agent and print its result (exit 2 unless it is ok)."""
    args: dict[str, Any] = {}
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--arg {item!r} is not key=value")
        args[key] = value

    def send_and_wait(c: FleetClient) -> dict[str, Any]:
        sent = c.send_command(store, name, args=args)
        deadline = time.monotonic() + wait
        result = c.command(sent["cmd_id"])
        while result.get("status") == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)  # the agent answers over MQTT; the API has no push to wait on
            result = c.command(sent["cmd_id"])
        return result

    result = _call(api, token, send_and_wait)
    typer.echo(json.dumps(result, indent=2))
    if result.get("status") != "ok":
        raise typer.Exit(2)


provision.register(app)  # fleet provision, fleet revoke (decision 0035)


def main() -> None:
    app(prog_name="fleet")
