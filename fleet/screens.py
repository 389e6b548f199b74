"""``fleet screens put|show|publish`` (decision 0051). Registered in ``fleet.cli`` with
one line.

    fleet screens put playlists.json            # a new version (hq-admin)
    fleet screens show --store s1 --zone bakery [--at 2026-12-07T09:30]
    fleet screens publish [--store s1] [--region north] [--group g]   # none: every store

API and token, errors and exit codes as every ``fleet`` command (decision 0038).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import output
from fleet.options import (
    ApiOpt,
    GroupsOpt,
    JsonOpt,
    RegionsOpt,
    StoresOpt,
    TokenOpt,
    selection,
)
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(help="Screen playlists: the cart screens and the signage.",
                  no_args_is_help=True)
URL = "/api/v1/screens/playlists"


def _req(method: str, path: str, **kw: Any) -> Any:
    def run(client: FleetClient) -> Any:
        return client.request(method, path, **kw)
    return run


@app.command("put")
def put_cmd(path: Annotated[Path, typer.Argument(help="the playlists as JSON")],
            api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Save a new version of the chain's playlists."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise output.fail(f"{path}: {err}", output.Exit.USAGE) from err
    out = call_api(api, token, _req("PUT", URL, json=body))
    if as_json:
        output.print_json(out)
    else:
        typer.echo(f"playlists v{out['version']} saved ({out['assets']} asset(s))")


@app.command("show")
def show_cmd(
    store: Annotated[str, typer.Option("--store", help="the store")],
    zone: Annotated[str | None, typer.Option("--zone", help="the screen's zone")] = None,
    at: Annotated[str | None, typer.Option("--at", help="ISO date-time (without an offset: "
                                           "the store's local time); default: now")] = None,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """What plays on each surface of a store's zone at a time."""
    params = {k: v for k, v in (("zone", zone), ("at", at)) if v}
    out: dict[str, Any] = call_api(api, token, _req(
        "GET", f"/api/v1/stores/{store}/screens/playlists", params=params))
    if as_json:
        output.print_json(out)
        return
    rows = [{"surface": surface, "playlist": n["playlist"], "item": n["item"]["id"],
             "kind": n["item"]["kind"], "duration_s": n["item"].get("duration_s")}
            for surface, items in out["now"].items() for n in items]
    output.table(rows, ["surface", "playlist", "item", "kind", "duration_s"], "items")
    typer.echo(f"v{out['playlists']['version']} at {out['at']}")


@app.command("publish")
def publish_cmd(
    store: StoresOpt = None, region: RegionsOpt = None, group: GroupsOpt = None,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Publish the newest playlists in the selected stores' (none: every store's)
    next content manifests."""
    body = selection(store, region, group)
    out = call_api(api, token, _req("POST", f"{URL}/publish", json=body))
    if as_json:
        output.print_json(out)
    else:
        typer.echo(f"playlists v{out['version']} published to {len(out['manifests'])} "
                   "store(s)" + (f"; not announced to {', '.join(out['failed'])}"
                                 if out["failed"] else ""))
