"""``storefleet cloud pki ...``: a deployment's CA, the broker's certificate and one
client certificate per store, a thin layer over ``cloud.pki`` (decision 0032)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cloud.pki import Issued

app = typer.Typer(help="Certificates for the broker's mTLS listener (CA, broker, stores).",
                  no_args_is_help=True)

DirArg = Annotated[Path, typer.Argument(help="the deployment's certificate folder")]


def _done(make: Callable[[], Issued]) -> Issued:
    # cloud.pki (cryptography) is imported inside the commands: `--help` stays fast.
    from cloud.pki import PkiError

    try:
        return make()
    except PkiError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err


@app.command("init")
def init(directory: DirArg) -> None:
    """A new CA: DIR/ca.crt (give it to the broker and every store), DIR/ca.key (0600,
    keep it off the broker)."""
    from cloud.pki import init_ca

    issued = _done(lambda: init_ca(directory))
    typer.echo(f"CA written: {issued.cert}, key {issued.key} (0600)")


@app.command("server")
def server(directory: DirArg,
           hosts: Annotated[list[str], typer.Option(
               "--host", help="a name or IP address stores and services connect to "
                              "(repeat it; each is a SAN)")]) -> None:
    """The broker's certificate: DIR/server.crt and DIR/server.key (0600)."""
    from cloud.pki import issue_server

    issued = _done(lambda: issue_server(directory, hosts))
    typer.echo(f"broker certificate written: {issued.cert}, key {issued.key} (0600)")


@app.command("store")
def store(directory: DirArg,
          store_id: Annotated[str, typer.Argument(help="the store id, the certificate's CN")]
          ) -> None:
    """A store's client certificate: DIR/stores/<id>.crt and .key (0600); copy both and
    DIR/ca.crt to the store box (`storefleet edge run --cloud-cert --cloud-key --cloud-ca`)."""
    from cloud.pki import issue_store

    issued = _done(lambda: issue_store(directory, store_id))
    typer.echo(f"store {store_id}: certificate {issued.cert}, key {issued.key} (0600)")


@app.command("crl")
def crl(directory: DirArg,
        out: Annotated[Path | None, typer.Option(
            "--out", help="the broker's crlfile [default: DIR/crl.pem]")] = None) -> None:
    """An empty revocation list signed by the CA, for the broker's `crlfile` before the
    first revocation; the cloud rewrites it on every revocation (decision 0035)."""
    from cloud.pki import PkiError, write_crl

    path = out or directory / "crl.pem"
    if path.exists():
        typer.echo(f"{path} exists; kept (the cloud keeps it up to date)")
        return
    try:
        write_crl(directory, path, [])
    except PkiError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"CRL written: {path} (give it to the broker: crlfile {path})")
