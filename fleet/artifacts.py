"""``fleet artifact upload|ls``: put a release, firmware or model into the cloud once, and
see what is there (decision 0036). Registered in ``fleet.cli`` with one line.

    fleet artifact upload dist/storefleet-1.4.0-py3-none-any.whl --kind agent \\
        --target agent --version 1.4.0
    fleet artifact upload ap9-3.1.0.bin --kind firmware --target firmware:esl/AP-9 \\
        --version 3.1.0
    fleet artifact ls --kind firmware

The file is streamed from disk (never read whole into memory); the cloud hashes, stores
and signs it and answers the signed manifest, printed here. API and token, errors and
exit codes as every ``fleet`` command (decision 0038: ``fleet.config``, ``fleet.output``);
a file that cannot be read is a usage error (2).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import output
from fleet.options import ApiOpt, JsonOpt, TokenOpt
from fleet.output import Exit
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(help="Artifacts: agent releases, device firmware, ONNX models.",
                  no_args_is_help=True)

COLUMNS = ["sha256", "kind", "target", "version", "size", "created_ms"]
UPLOAD_TIMEOUT_S = 60.0  # per read or write of a big upload, not for the whole of it





class Kind(StrEnum):  # protocols.artifacts.ArtifactKind; kept here so --help stays light
    AGENT = "agent"
    FIRMWARE = "firmware"
    MODEL = "model"
    ASSET = "asset"  # content (decision 0046)


def upload(client: FleetClient, path: Path, *, kind: str, target: str,
           version: str) -> dict[str, Any]:
    """POST the file's bytes (streamed) and return the signed manifest."""
    with path.open("rb") as body:
        return dict(client.request("POST", "/api/v1/artifacts", content=body,
                                   params={"kind": kind, "target": target,
                                           "version": version},
                                   headers={"Content-Type": "application/octet-stream"}))


def listing(client: FleetClient, *, kind: str | None = None,
            target: str | None = None) -> list[dict[str, Any]]:
    params = {k: v for k, v in (("kind", kind), ("target", target)) if v is not None}
    return list(client.request("GET", "/api/v1/artifacts", params=params))




@app.command("upload")
def upload_cmd(
    file: Annotated[Path, typer.Argument(help="the file to upload")],
    kind: Annotated[Kind, typer.Option(help="agent | firmware | model | asset")],
    target: Annotated[str, typer.Option(help="agent | firmware:<family>/<model> | "
                                        "model:positioning | model:vision | content")],
    version: Annotated[str, typer.Option(help="the artifact's version label")],
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a file once; print its signed manifest."""
    if not file.is_file():
        raise output.fail(f"{file} is not a readable file", Exit.USAGE)
    try:
        signed = call_api(api, token, lambda c: upload(c, file, kind=kind.value, target=target,
                                                    version=version),
                          timeout=UPLOAD_TIMEOUT_S)
    except OSError as err:
        raise output.fail(f"cannot read {file}: {err.strerror}", Exit.USAGE) from err
    if as_json:
        output.print_json(signed)
        return
    manifest = signed["payload"]
    typer.echo(f"{manifest['sha256']}  {manifest['target']} {manifest['version']}  "
               f"{manifest['size']} bytes  signed by {signed['key_id']}")


@app.command("ls")
def ls_cmd(
    kind: Annotated[Kind | None, typer.Option(help="only this kind")] = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List artifacts, newest first."""
    rows = call_api(api, token, lambda c: listing(c, kind=kind.value if kind else None,
                                               target=target), timeout=UPLOAD_TIMEOUT_S)
    if as_json:
        output.print_json(rows)
    else:
        output.table(rows, COLUMNS, "artifacts")
