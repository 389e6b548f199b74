"""Who a simulated store is on the broker: its store id (the MQTT client id) and, where
the deployment gives each store its own credentials (Mosquitto's dynamic security,
``tests/integration/test_enrolment.py``), its user name and password.

A credentials file has one store per line, ``store_id username password`` separated by
blanks (``#`` starts a comment); stores not in it use the broker URL's credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protocols.broker import BrokerAddress
from protocols.ids import check_id


class CredentialsError(ValueError):
    """A credentials file line that cannot be read (``line`` is 1-based)."""

    def __init__(self, path: Path, line: int, detail: str) -> None:
        super().__init__(f"{path}:{line}: {detail}")
        self.path = path
        self.line = line


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    store_id: str
    broker: BrokerAddress = field(repr=False)


def store_ids(prefix: str, count: int, *, first: int = 0) -> list[str]:
    """``prefix`` plus a zero-padded number: ``S00000`` ... (sortable, valid ids)."""
    return [check_id(f"{prefix}{n:05d}", "store id") for n in range(first, first + count)]


def read_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """store id -> (username, password) from a credentials file."""
    found: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 3:
            raise CredentialsError(path, number, "want 'store_id username password'")
        store_id, username, password = parts
        try:
            check_id(store_id, "store id")
        except ValueError as err:
            raise CredentialsError(path, number, str(err)) from err
        found[store_id] = (username, password)
    return found


def identities(ids: list[str], *, broker: BrokerAddress,
               credentials: dict[str, tuple[str, str]] | None = None) -> list[StoreIdentity]:
    """Each store with the broker address it connects with (its own credentials if
    the file names it)."""
    creds = credentials or {}
    out = []
    for store_id in ids:
        address = broker
        if store_id in creds:
            username, password = creds[store_id]
            address = broker.with_credentials(username=username, password=password)
        out.append(StoreIdentity(store_id, address))
    return out
