"""``storefleet edge enrol``: fetch this box's identity bundle once with a one-time
token and install it (decision 0035). The bundle is made by ``cloud.enrolment.bundle``.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import httpx

from protocols.errors import StorefleetError

FILES = ("store.crt", "store.key", "ca.crt", "broker.url", "README")
# A bundle is a few kB; anything larger is not one of ours.
MAX_BUNDLE_BYTES = 256 * 1024


class EnrolError(StorefleetError):
    """Enrolment failed; ``reason``: refused (the cloud said no), unreachable, bad_bundle."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def fetch(cloud_api: str, token: str, *, timeout_s: float = 30.0) -> bytes:
    url = cloud_api.rstrip("/") + "/api/v1/enrol"
    try:
        resp = httpx.post(url, json={"token": token}, timeout=timeout_s)
    except httpx.HTTPError as err:
        raise EnrolError("unreachable", f"cannot reach {url}: {err or type(err).__name__}"
                         ) from err
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text[:200])
        except ValueError:
            detail = resp.text[:200]
        raise EnrolError("refused", f"{resp.status_code}: {detail}")
    return resp.content


def install(data: bytes, directory: Path) -> dict[str, Path]:
    """Unpack a bundle into ``directory`` (created 0700): only the known file names,
    never a path from the archive, the key created 0600. Returns name -> path."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise EnrolError("bad_bundle", f"{len(data)} bytes: not an enrolment bundle")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.rpartition("/")[2]
                extracted = tar.extractfile(member) if member.isfile() else None
                if name in FILES and extracted is not None:
                    found[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise EnrolError("bad_bundle", f"not an enrolment bundle: {err}") from err
    if missing := [n for n in FILES if n not in found]:
        raise EnrolError("bad_bundle", f"the bundle lacks {', '.join(missing)}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {}
    for name in FILES:
        path = directory / name
        path.unlink(missing_ok=True)  # re-enrolment replaces the rotated identity
        mode = 0o600 if name == "store.key" else 0o644
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            out.write(found[name])
        paths[name] = path
    return paths
