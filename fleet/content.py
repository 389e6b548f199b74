"""``fleet content status|publish`` (decision 0046). Registered in ``fleet.cli`` with one
line.

    fleet content publish --store s1 --region north --doc schedule=day.json \\
        --asset <sha256>=jingle.wav
    fleet content status [--store S] [--json]   # per store: published against applied

API and token, errors and exit codes as every ``fleet`` command (decision 0038).
"""

from __future__ import annotations

import datetime as dt
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

app = typer.Typer(help="Content: what every store plays, shows and charges.",
                  no_args_is_help=True)

COLUMNS = ["store_id", "state", "published_version", "applied_version", "applied",
           "pricebook", "schedule", "playlists", "labels", "assets_missing", "detail"]
PARTS = ("pricebook", "schedule", "playlists")


def _when(ms: int | None) -> str:
    """A box's epoch milliseconds as UTC time of day (the date when not today)."""
    if ms is None:
        return ""
    at = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    today = dt.datetime.now(dt.UTC).date()
    return at.strftime("%H:%M:%S" if at.date() == today else "%Y-%m-%d %H:%M:%S")


def _part(p: dict[str, Any] | None) -> str:
    """``v12 since 10:02:03`` when converged, else ``pending v12 (runs v11)``."""
    if not p or p.get("state") == "unpublished":
        return "" if not p or p.get("applied") is None else f"runs v{p['applied']}"
    if p["state"] == "converged":
        return f"v{p['applied']} since {_when(p.get('applied_ms'))}"
    runs = f" (runs v{p['applied']})" if p.get("applied") is not None else ""
    return f"{p['state']} v{p['published']}{runs}"


def _labels(counts: dict[str, int] | None) -> str:
    if not counts:
        return ""
    return (f"{counts.get('current', 0)} current, {counts.get('pending', 0)} pending, "
            f"{counts.get('stale', 0)} stale")


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The status API's rows as the table shows them: one cell per part."""
    out = []
    for row in rows:
        shown = dict(row)
        shown["applied"] = _when(row.get("applied_ms"))
        for part in PARTS:
            shown[part] = _part((row.get("parts") or {}).get(part))
        shown["labels"] = _labels(row.get("labels"))
        out.append(shown)
    return out


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
    """Per store: the manifest version published against the one applied, since when;
    per part (the till's price book, the audio units' schedule, the screens' playlists)
    the version taken and since when, or what it waits for; and its shelf labels."""
    params = {"store_id": store} if store else {}
    rows = call_api(api, token, _req("GET", "/api/v1/content/status", params=params))
    if as_json:
        output.print_json(rows)
        return
    output.table(display_rows(rows), COLUMNS, "content")
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    typer.echo(", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no stores")


@app.command("publish")
def publish_cmd(
    store: StoresOpt = None, region: RegionsOpt = None, group: GroupsOpt = None,
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
    body = {**selection(store, region, group), "documents": documents, "assets": assets}
    out = call_api(api, token, _req("POST", "/api/v1/content/publish", json=body))
    if as_json:
        output.print_json(out)
    else:
        typer.echo(f"published to {out['stores']} store(s) in {out['seconds']} s"
                   + (f"; not announced to {', '.join(out['failed'])}" if out["failed"]
                      else ""))
