"""Where ``fleet`` finds the cloud API and its token (decision 0038).

``fleet login`` writes both to ``config.json`` in the user's config directory
(``$XDG_CONFIG_HOME/storefleet`` or ``~/.config/storefleet`` on Linux, click's
``get_app_dir``), readable by the user only (0600): the token is a credential. Each
command then takes, first to last: ``--api`` / ``--token``, the environment
(``STOREFLEET_API``, ``STOREFLEET_TOKEN``, which typer folds into the options), the file,
and for the API only the local default.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from protocols.errors import StorefleetError

DEFAULT_API = "http://127.0.0.1:8000"
APP_NAME = "storefleet"
FILE_NAME = "config.json"


class ConfigError(StorefleetError):
    """The config file cannot be read or written; ``path`` says which."""

    reason = "fleet_config"

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"fleet config {path}: {detail}")
        self.path = path
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Target:
    """The API to talk to and the token to show it; ``source`` names where the API came from."""

    api: str
    token: str | None
    source: str


def config_path() -> Path:
    return Path(click.get_app_dir(APP_NAME)) / FILE_NAME


def load(path: Path | None = None) -> dict[str, str]:
    """The saved ``api`` and ``token`` (empty when nothing was saved)."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ConfigError(path, f"unreadable ({err}); run `fleet login` again") from err
    if not isinstance(data, dict):
        raise ConfigError(path, "not a JSON object; run `fleet login` again")
    return {k: str(v) for k, v in data.items() if k in ("api", "token") and v}


def save(api: str, token: str, path: Path | None = None) -> Path:
    """Write ``api`` and ``token``, mode 0600 from the first byte, replacing atomically."""
    path = path or config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600, so the token is never readable by others
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"api": api, "token": token}, out, indent=2)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ConfigError(path, f"cannot write ({err})") from err
    return path


def resolve(api: str | None, token: str | None, path: Path | None = None) -> Target:
    """Options (already folded with the environment by typer) over the file over defaults.

    The saved token goes only to the saved API: ``--api`` naming another cloud without
    ``--token`` sends no token rather than leak this one to it.
    """
    saved = load(path) if api is None or token is None else {}
    source = "option or environment"
    if api is None:
        api, source = saved.get("api", DEFAULT_API), (str(path or config_path())
                                                      if "api" in saved else "default")
    if token is None and saved.get("api") == api:
        token = saved.get("token")
    return Target(api=api, token=token, source=source)
