"""One way every ``fleet`` command talks to the cloud: resolve the API and token (flags,
environment, ``fleet login``'s file), run the call with a client, and turn an API error
into one line on stderr and its exit code (decision 0038)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from fleet import output
from fleet.output import Exit

if TYPE_CHECKING:
    from fleet.client import FleetClient

T = TypeVar("T")

_HINTS = {401: " (pass a valid --token, set STOREFLEET_TOKEN or run `fleet login`)",
          0: " (is --api / STOREFLEET_API right, and the API running?)"}


def call_api(api: str | None, token: str | None, fn: Callable[[FleetClient], T], *,
             timeout: float = 10.0, hints: Mapping[int, str] | None = None) -> T:
    """Run ``fn`` with a client; a ``FleetError`` becomes one line and its exit code.
    ``hints``: extra advice by HTTP status (e.g. what a 404 means for this command)."""
    from fleet.client import FleetClient, FleetError
    from fleet.config import ConfigError, resolve

    try:
        target = resolve(api, token)
        with FleetClient(target.api, token=target.token, timeout=timeout) as client:
            return fn(client)
    except ConfigError as err:
        raise output.fail(str(err), Exit.FAILED) from err
    except FleetError as err:
        hint = {**_HINTS, **(hints or {})}.get(err.status, "")
        raise output.fail(f"{err}{hint}", output.exit_for_status(err.status)) from err
