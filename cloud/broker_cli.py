"""``storefleet cloud broker ...``: create the broker's users on Mosquitto's dynamic
security plugin (decision 0027, deploy/mosquitto/README.md), a thin layer over
``cloud.broker_users``.

Passwords come from files or the environment, never the command line (where ``ps`` and
shell history would show them).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Broker users and their rights (Mosquitto dynamic security plugin).",
                  no_args_is_help=True)

BrokerOpt = Annotated[
    str,
    typer.Option("--mqtt", envvar="STOREFLEET_MQTT_URL", show_envvar=True,
                 help="the broker, as the plugin's admin reaches it"),
]
AdminOpt = Annotated[
    str,
    typer.Option("--admin-username", envvar="STOREFLEET_BROKER_ADMIN_USERNAME",
                 show_envvar=True, help="the user made by `mosquitto_ctrl dynsec init`"),
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--mqtt-ca", envvar="STOREFLEET_MQTT_CA", show_envvar=True,
                 help="mqtts://: the CA file of the broker's certificate"),
]
CertOpt = Annotated[
    Path | None,
    typer.Option("--mqtt-cert", envvar="STOREFLEET_MQTT_CERT", show_envvar=True,
                 help="mqtts://: a client certificate, when the listener asks for one"),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--mqtt-key", envvar="STOREFLEET_MQTT_KEY", show_envvar=True,
                 help="mqtts://: the client certificate's key"),
]
AdminPasswordOpt = Annotated[
    Path | None,
    typer.Option("--admin-password-file", envvar="STOREFLEET_BROKER_ADMIN_PASSWORD_FILE",
                 show_envvar=True,
                 help="file holding the admin's password [default: "
                      "$STOREFLEET_BROKER_ADMIN_PASSWORD]"),
]
PasswordOpt = Annotated[
    Path | None,
    typer.Option("--password-file",
                 help="file holding the new user's password; omit for a certificate "
                      "identity (use_identity_as_username), which has no password"),
]


def _secret(path: Path | None, env: str, what: str) -> str:
    if path is not None:
        return _read(path, what)
    value = os.environ.get(env)
    if not value:
        typer.echo(f"no {what}: give a file or set {env}", err=True)
        raise typer.Exit(2)
    return value


def _read(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as err:
        typer.echo(f"cannot read the {what} from {path}: {err}", err=True)
        raise typer.Exit(2) from err
    if not value:
        typer.echo(f"{path} is empty: no {what}", err=True)
        raise typer.Exit(2)
    return value


def _send(mqtt: str, admin: str, admin_password: Path | None, commands: list[dict[str, Any]],
          *, tls: tuple[Path | None, Path | None, Path | None] = (None, None, None),
          tolerate_existing: bool = False) -> None:
    import asyncio

    from cloud.broker_users import BrokerAdminError, send_commands
    from protocols.broker import BrokerAddress, BrokerAddressError

    ca, cert, key = tls
    try:
        address = BrokerAddress.parse(mqtt, setting="--mqtt").with_tls(
            ca_file=ca, cert_file=cert, key_file=key, prefix="--mqtt")
    except BrokerAddressError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    for setting, path in address.tls_files(prefix="--mqtt"):
        _read(path, setting)  # missing or unreadable: refused here, the option named
    password = _secret(admin_password, "STOREFLEET_BROKER_ADMIN_PASSWORD", "admin password")
    address = address.with_credentials(username=admin, password=password)
    try:
        asyncio.run(send_commands(address, commands=commands,
                                  tolerate_existing=tolerate_existing))
    except BrokerAdminError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err


@app.command()
def setup(mqtt: BrokerOpt = "mqtt://127.0.0.1:1883", admin_username: AdminOpt = "admin",
          admin_password_file: AdminPasswordOpt = None, mqtt_ca: CaOpt = None,
          mqtt_cert: CertOpt = None, mqtt_key: KeyOpt = None) -> None:
    """Deny by default and create the cloud roles (ingest, hq); safe to run again."""
    from cloud.broker_users import setup_commands

    _send(mqtt, admin_username, admin_password_file, setup_commands(),
          tls=(mqtt_ca, mqtt_cert, mqtt_key), tolerate_existing=True)
    typer.echo("broker set up: deny by default, roles ingest and hq")


@app.command("add-store")
def add_store(store_id: Annotated[str, typer.Argument(help="the store id, its username")],
              password_file: PasswordOpt = None, mqtt: BrokerOpt = "mqtt://127.0.0.1:1883",
              admin_username: AdminOpt = "admin",
              admin_password_file: AdminPasswordOpt = None,
              generate: Annotated[bool, typer.Option(
                  "--generate", help="if --password-file does not exist, write a new random "
                                     "password to it (mode 0600) first")] = False,
              mqtt_ca: CaOpt = None, mqtt_cert: CertOpt = None,
              mqtt_key: KeyOpt = None) -> None:
    """Create a store's user and its role store-<id> (its own topics only, no $share)."""
    from cloud.broker_users import store_user_commands
    from protocols.errors import TopicError

    if generate:
        if password_file is None:
            typer.echo("--generate needs --password-file (where to write the password)",
                       err=True)
            raise typer.Exit(2)
        from cloud.secrets_cli import write_secret

        if write_secret(password_file, lambda: secrets.token_urlsafe(24).encode()):
            typer.echo(f"new password written to {password_file} (mode 0600): copy it to "
                       f"the store box, give it to `storefleet edge run --cloud-password-file`")
    password = _read(password_file, "password") if password_file else None
    try:
        commands = store_user_commands(store_id, password)
    except TopicError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    _send(mqtt, admin_username, admin_password_file, commands,
          tls=(mqtt_ca, mqtt_cert, mqtt_key))
    how = "password" if password else "certificate identity (CN = store id, mTLS)"
    typer.echo(f"store {store_id}: user and role store-{store_id} created ({how})")


@app.command("add-cloud")
def add_cloud(username: Annotated[str, typer.Argument(
                  envvar="STOREFLEET_MQTT_USERNAME", show_envvar=True,
                  help="e.g. storefleet-cloud")],
              password_file: Annotated[Path | None, typer.Option(
                  "--password-file", envvar="STOREFLEET_MQTT_PASSWORD_FILE", show_envvar=True,
                  help="file holding the cloud user's password (the one ingest and the "
                       "API are given)")] = None,
              mqtt: BrokerOpt = "mqtt://127.0.0.1:1883",
              admin_username: AdminOpt = "admin",
              admin_password_file: AdminPasswordOpt = None, mqtt_ca: CaOpt = None,
              mqtt_cert: CertOpt = None, mqtt_key: KeyOpt = None) -> None:
    """Create a cloud services user (ingest workers and the API) with roles ingest and hq."""
    from cloud.broker_users import cloud_user_commands

    password = _read(password_file, "password") if password_file else None
    _send(mqtt, admin_username, admin_password_file, cloud_user_commands(username, password),
          tls=(mqtt_ca, mqtt_cert, mqtt_key))
    typer.echo(f"cloud user {username} created (roles ingest, hq)")
