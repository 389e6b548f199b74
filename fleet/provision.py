"""``fleet provision STORE`` and ``fleet revoke STORE`` (decision 0035): thin wrappers
over ``POST /api/v1/stores/{id}/provision`` and ``/revoke``.

``provision`` prints the one-time token the box enrols with (``storefleet edge enrol``);
with ``--bundle FILE`` it enrols at once and writes the bundle (key included, 0600) for
a technician to carry to the box.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

ApiOpt = Annotated[str, typer.Option("--api", envvar="STOREFLEET_API", help="cloud API base URL")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="STOREFLEET_TOKEN", help="API bearer token")
]
DEFAULT_API = "http://127.0.0.1:8000"


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(1)


def provision(
    store: Annotated[str, typer.Argument(help="store id")],
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="enrol now and write the bundle here (instead of a token)")] = None,
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Issue a store's identity: a one-time enrolment token (or, with --bundle, the
    bundle itself). Provisioning a store again rotates its keys when the box enrols."""
    from fleet.client import FleetClient, FleetError

    try:
        with FleetClient(api, token=token) as client:
            done: dict[str, Any] = client._call("POST", f"/api/v1/stores/{store}/provision")
            if bundle is not None:
                # The bundle is gzip, not JSON: the same call the box makes.
                resp = client._http.post("/api/v1/enrol", json={"token": done["token"]})
                if resp.status_code != 200:
                    raise FleetError(resp.status_code, "enrolment refused", resp.text[:200])
                data = resp.content
                with os.fdopen(os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                               "wb") as out:
                    out.write(data)
    except (FleetError, OSError) as err:
        raise _fail(err) from err
    if bundle is not None:
        typer.echo(f"store {store}: bundle written to {bundle} (0600; holds the private key)")
    elif as_json:
        typer.echo(json.dumps(done))
    else:
        typer.echo(f"store {store}: enrolment token (valid until {done['expires_ms']} ms, "
                   f"once):\n{done['token']}\non the box: storefleet edge enrol --token "
                   f"<token> --cloud-api {api}")


def revoke(
    store: Annotated[str, typer.Argument(help="store id")],
    api: ApiOpt = DEFAULT_API,
    token: TokenOpt = None,
) -> None:
    """Cut a store off at the broker (CRL, client disabled and kicked) and the API."""
    from fleet.client import FleetClient, FleetError

    try:
        with FleetClient(api, token=token) as client:
            client._call("POST", f"/api/v1/stores/{store}/revoke")
    except FleetError as err:
        raise _fail(err) from err
    typer.echo(f"store {store}: revoked")


def register(app: typer.Typer) -> None:
    app.command("provision")(provision)
    app.command("revoke")(revoke)
