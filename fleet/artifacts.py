"""``fleet artifact upload|ls``: put a release, firmware or model into the cloud once, and
see what is there (decision 0036). Registered in ``fleet.cli`` with one line.

    fleet artifact upload dist/storefleet-1.4.0-py3-none-any.whl --kind agent \\
        --target agent --version 1.4.0
    fleet artifact upload ap9-3.1.0.bin --kind firmware --target firmware:esl/AP-9 \\
        --version 3.1.0
    fleet artifact ls --kind firmware

The file is streamed from disk (never read whole into memory); the cloud hashes, stores
and signs it and answers the signed manifest, printed here. Exit codes: 0 done, 1 the
API refused or could not be reached (one line on stderr, never a traceback), 2 a file
that cannot be read.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(help="Artifacts: agent releases, device firmware, ONNX models.",
                  no_args_is_help=True)

DEFAULT_API = "http://127.0.0.1:8000"
COLUMNS = ["sha256", "kind", "target", "version", "size", "created_ms"]

ApiOpt = Annotated[str, typer.Option("--api", envvar="STOREFLEET_API",
                                     help="cloud API base URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="STOREFLEET_TOKEN",
                                              help="API bearer token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class Kind(StrEnum):  # protocols.artifacts.ArtifactKind; kept here so --help stays light
    AGENT = "agent"
    FIRMWARE = "firmware"
    MODEL = "model"


def upload(client: FleetClient, path: Path, *, kind: str, target: str,
           version: str) -> dict[str, Any]:
    """POST the file's bytes (streamed) and return the signed manifest. (``_call`` is
    the client's one request path with its error mapping; this package's own.)"""
    with path.open("rb") as body:
        return dict(client._call("POST", "/api/v1/artifacts", content=body,
                                   params={"kind": kind, "target": target,
                                           "version": version},
                                   headers={"Content-Type": "application/octet-stream"}))


def listing(client: FleetClient, *, kind: str | None = None,
            target: str | None = None) -> list[dict[str, Any]]:
    params = {k: v for k, v in (("kind", kind), ("target", target)) if v is not None}
    return list(client._call("GET", "/api/v1/artifacts", params=params))


def _with_client(api: str, token: str | None) -> FleetClient:
    from fleet.client import FleetClient, FleetError

    try:
        return FleetClient(api, token=token, timeout=60.0)  # a big upload's writes
    except FleetError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err


def _fail(err: Exception) -> typer.Exit:
    from fleet.client import FleetError

    hint = ""
    if isinstance(err, FleetError) and err.status == 401:
        hint = " (pass a valid --token or set STOREFLEET_TOKEN)"
    elif isinstance(err, FleetError) and err.status == 0:
        hint = " (is --api / STOREFLEET_API right, and the API running?)"
    typer.echo(f"error: {err}{hint}", err=True)
    return typer.Exit(1)


@app.command("upload")
def upload_cmd(
    file: Annotated[Path, typer.Argument(help="the file to upload")],
    kind: Annotated[Kind, typer.Option(help="agent | firmware | model")],
    target: Annotated[str, typer.Option(help="agent | firmware:<family>/<model> | "
                                        "model:positioning | model:vision")],
    version: Annotated[str, typer.Option(help="the artifact's version label")],
    api: ApiOpt = DEFAULT_API, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a file once; print its signed manifest."""
    from fleet.client import FleetError

    if not file.is_file():
        typer.echo(f"error: {file} is not a readable file", err=True)
        raise typer.Exit(2)
    try:
        with _with_client(api, token) as client:
            signed = upload(client, file, kind=kind.value, target=target, version=version)
    except FleetError as err:
        raise _fail(err) from err
    except OSError as err:
        typer.echo(f"error: cannot read {file}: {err.strerror}", err=True)
        raise typer.Exit(2) from err
    if as_json:
        import json

        typer.echo(json.dumps(signed, indent=2))
        return
    manifest = signed["payload"]
    typer.echo(f"{manifest['sha256']}  {manifest['target']} {manifest['version']}  "
               f"{manifest['size']} bytes  signed by {signed['key_id']}")


@app.command("ls")
def ls_cmd(
    kind: Annotated[Kind | None, typer.Option(help="only this kind")] = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    api: ApiOpt = DEFAULT_API, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List artifacts, newest first."""
    from fleet.client import FleetError

    try:
        with _with_client(api, token) as client:
            rows = listing(client, kind=kind.value if kind else None, target=target)
    except FleetError as err:
        raise _fail(err) from err
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="artifacts")
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in COLUMNS))
    Console().print(table)
