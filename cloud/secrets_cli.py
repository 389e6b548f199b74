"""``storefleet cloud secrets init DIR``: every secret a production cloud needs, made once.

    storefleet cloud secrets init /etc/storefleet
    set -a; . /etc/storefleet/cloud.env; set +a      # or EnvironmentFile= in a unit

Writes, each mode 0600 and only if it does not exist yet (a second run never replaces a
key: a new signing key would orphan every store's trust, a new member hash key every
stored phone hash):

=========================  ====================================================
``signing-key.pem``        Ed25519 private key signing promotion snapshots
``release-key.pem``        Ed25519 private key signing artifact manifests (0036)
``member-hash.key``        HMAC key of members' phone-number hashes
``hq-admin.token``         an API bearer token with the role hq-admin
``api-tokens``             ``<token>:hq-admin``, the API's token list
``mqtt-cloud.secret``      the cloud services' broker password
``broker-admin.secret``    the broker plugin admin's password
``cloud.env``              the ``STOREFLEET_*`` variables naming the files above
=========================  ====================================================

Nothing secret is printed; ``cloud.env`` holds only file names.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The cloud's secrets: keys, tokens, broker passwords.",
                  no_args_is_help=True)

CLOUD_MQTT_USER = "storefleet-cloud"


def _random() -> bytes:
    return secrets.token_urlsafe(32).encode()


def _signing_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def write_secret(path: Path, make: Callable[[], bytes]) -> bool:
    """Create ``path`` (0600) holding ``make()``; False if it already exists (kept)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(make())
    return True


def init_secrets(directory: Path) -> dict[str, bool]:
    """Make every missing secret in ``directory``; file name -> whether it was created."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = {
        "signing-key.pem": write_secret(directory / "signing-key.pem", _signing_key),
        "release-key.pem": write_secret(directory / "release-key.pem", _signing_key),
        "member-hash.key": write_secret(directory / "member-hash.key", _random),
        "hq-admin.token": write_secret(directory / "hq-admin.token", _random),
        "mqtt-cloud.secret": write_secret(directory / "mqtt-cloud.secret", _random),
        "broker-admin.secret": write_secret(directory / "broker-admin.secret", _random),
    }
    token = (directory / "hq-admin.token").read_text().strip()
    created["api-tokens"] = write_secret(directory / "api-tokens",
                                         lambda: f"{token}:hq-admin\n".encode())
    d = directory.resolve()
    env = (f"STOREFLEET_SIGNING_KEY_FILE={d / 'signing-key.pem'}\n"
           f"STOREFLEET_RELEASE_KEY_FILE={d / 'release-key.pem'}\n"
           f"STOREFLEET_MEMBER_HASH_KEY_FILE={d / 'member-hash.key'}\n"
           f"STOREFLEET_API_TOKENS_FILE={d / 'api-tokens'}\n"
           f"STOREFLEET_MQTT_USERNAME={CLOUD_MQTT_USER}\n"
           f"STOREFLEET_MQTT_PASSWORD_FILE={d / 'mqtt-cloud.secret'}\n"
           f"STOREFLEET_BROKER_ADMIN_PASSWORD_FILE={d / 'broker-admin.secret'}\n"
           # production refuses the birth of a store that did not enrol (decision 0035)
           "STOREFLEET_REQUIRE_ENROLMENT=1\n")
    created["cloud.env"] = write_secret(directory / "cloud.env", env.encode)
    return created


@app.command("init")
def init(directory: Annotated[Path, typer.Argument(
        help="where to keep them, e.g. /etc/storefleet (created 0700)")]) -> None:
    """Create the signing and release keys, member hash key, hq-admin token, broker
    passwords."""
    try:
        created = init_secrets(directory)
    except OSError as err:
        typer.echo(f"cannot write secrets to {directory}: {err}", err=True)
        raise typer.Exit(2) from err
    for name, new in created.items():
        typer.echo(f"{'created' if new else 'kept   '} {directory / name}")
    typer.echo(f"load them with: set -a; . {directory / 'cloud.env'}; set +a")
