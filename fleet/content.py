"""``fleet content status|publish`` (decision 0046). Registered in ``fleet.cli`` with one
line.

    fleet content publish --store s1 --region north --doc schedule=day.json \\
        --asset <sha256>=jingle.wav
    fleet content status [--store S] [--json]   # per store: published against applied

API and token, errors and exit codes as every ``fleet`` command (decision 0038).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import output
from fleet.artifacts import ApiOpt, JsonOpt, TokenOpt
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(help="Content: what every store plays, shows and charges.",
                  no_args_is_help=True)

COLUMNS = ["store_id", "state", "published_version", "applied_version", "applied_ms",
           "price_book_version", "schedule_version", "assets_missing", "detail"]


def _req(method: str, path: str, **kw: Any) -> Any:
    def run(client: FleetClient) -> Any:
        return client.request(method, path, **kw)
    return run


def _pair(value: str, what: str) -> tuple[str, str]:
    key, sep, rest = value.partition("=")
    if not sep or not key or not rest:
        raise output.fail(f"{what} {value!r}: give NAME=VALUE", output.Exit.USAGE)
    return key, rest


@app.command("status")
def status_cmd(
    store: Annotated[str | None, typer.Option("--store", help="one store only")] = None,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Per store: the manifest version published against the one applied, since when,
    and its price book and schedule versions."""
    params = {"store_id": store} if store else {}
    rows = call_api(api, token, _req("GET", "/api/v1/content/status", params=params))
    if as_json:
        output.print_json(rows)
        return
    output.table(rows, COLUMNS, "content")
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    typer.echo(", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no stores")


@app.command("publish")
def publish_cmd(
    store: Annotated[list[str] | None, typer.Option("--store", help="a store (repeat)")
                     ] = None,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="the stores of a region (repeat)")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="the stores of a store group (repeat)")] = None,
    doc: Annotated[list[str] | None, typer.Option(
        "--doc", help="NAME=FILE: a JSON document carried inline (schedule, playlists)")
                   ] = None,
    asset: Annotated[list[str] | None, typer.Option(
        "--asset", help="SHA256=NAME: an uploaded asset (fleet artifact upload --kind "
        "asset --target content)")] = None,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Publish content as each selected store's next signed manifest."""
    documents = {}
    for value in doc or []:
        name, path = _pair(value, "--doc")
        try:
            documents[name] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise output.fail(f"--doc {name}: {err}", output.Exit.USAGE) from err
    assets = [dict(zip(("sha256", "name"), _pair(v, "--asset"), strict=True))
              for v in asset or []]
    body = {"stores": store or [], "regions": region or [], "groups": group or [],
            "documents": documents, "assets": assets}
    out = call_api(api, token, _req("POST", "/api/v1/content/publish", json=body))
    if as_json:
        output.print_json(out)
    else:
        typer.echo(f"published to {out['stores']} store(s) in {out['seconds']} s"
                   + (f"; not announced to {', '.join(out['failed'])}" if out["failed"]
                      else ""))
