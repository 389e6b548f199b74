"""``fleet provision STORE`` and ``fleet revoke STORE`` (decision 0035): thin wrappers
over ``POST /api/v1/stores/{id}/provision`` and ``/revoke``. Registered in ``fleet.cli``
with one line.

    fleet provision S001                  # a one-time token for `storefleet edge enrol`
    fleet provision S001 --bundle S001.tar.gz   # enrol now; the bundle (0600) to carry
    fleet revoke S001

API and token, errors and exit codes as every ``fleet`` command (decision 0038:
``fleet.config``, ``fleet.output``); a bundle file that exists or cannot be written is a
usage error (2). The token is printed once and never logged; the bundle holds the
store's private key and is written 0600, never over an existing file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import output
from fleet.options import ApiOpt, TokenOpt
from fleet.output import Exit
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

StoreArg = Annotated[str, typer.Argument(help="store id")]



# a 404 here: no such store, or provisioning is off on this cloud (no CA configured)
NOT_FOUND = {404: " (no such store, or this cloud has no CA: STOREFLEET_CA_DIR)"}


def provision_store(client: FleetClient, store_id: str) -> dict[str, Any]:
    """A one-time enrolment token: ``{store_id, token, expires_ms}``."""
    return dict(client.request("POST", f"/api/v1/stores/{store_id}/provision"))


def enrol(client: FleetClient, token: str) -> bytes:
    """The bundle (tar.gz) for a one-time token, as the box would fetch it."""
    return client.raw("POST", "/api/v1/enrol", json={"token": token}).content  # gzip


def revoke_store(client: FleetClient, store_id: str) -> dict[str, Any]:
    return dict(client.request("POST", f"/api/v1/stores/{store_id}/revoke"))




def provision(
    store: StoreArg,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="enrol now and write the bundle here (0600) instead of printing "
                         "a token")] = None,
    api: ApiOpt = None, token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="print the token alone (for scripts: "
                              "ENROL_TOKEN=$(fleet provision S001 -q))")] = False,
) -> None:
    """Issue a store's identity: a one-time enrolment token for `storefleet edge enrol`
    (or, with --bundle, the bundle itself). Again for a store: its keys rotate when the
    box enrols, and its old certificate is revoked."""
    if bundle is not None and bundle.exists():
        raise output.fail(f"{bundle} exists; not replaced", Exit.USAGE)

    def work(client: FleetClient) -> tuple[dict[str, Any], bytes | None]:
        done = provision_store(client, store)
        return done, (enrol(client, done["token"]) if bundle is not None else None)

    done, data = call_api(api, token, work, hints=NOT_FOUND)
    if bundle is not None and data is not None:
        try:
            with os.fdopen(os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                           "wb") as out:
                out.write(data)
        except OSError as err:
            raise output.fail(f"cannot write {bundle}: {err.strerror}", Exit.USAGE) from err
        typer.echo(f"store {store}: bundle written to {bundle} (0600; it holds the store's "
                   "private key: carry it to the box, then delete it)")
    elif as_json:
        output.print_json(done)
    elif quiet:
        typer.echo(done["token"])
    else:
        typer.echo(f"store {store}: one-time enrolment token, valid until "
                   f"{done['expires_ms']} (epoch ms):\n{done['token']}\n"
                   "on the box: storefleet edge enrol --token <token> --cloud-api <API URL>")


def revoke(store: StoreArg, api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Cut a store off: its certificate refused by the broker (CRL), its connection
    kicked, its device tokens refused by the API. `fleet provision` readmits it."""
    call_api(api, token, lambda c: revoke_store(c, store), hints=NOT_FOUND)
    typer.echo(f"store {store}: revoked")


def register(app: typer.Typer) -> None:
    app.command("provision")(provision)
    app.command("revoke")(revoke)
