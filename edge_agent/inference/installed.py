"""ONNX models replaced by a rollout (decision 0042): what a running module offers the
model installer (``ModelSlot``), and the record of what was installed, read when the
module starts (``InstalledModels``).

    <data_dir>/models/<name>.json             {"sha256", "version", "rollout_id"}
    <data_dir>/models/<name>/<sha256>.onnx    the verified bytes, copied out of the cache

A copy, not a pointer into ``cas/``: the artifact cache evicts by its own bound, and
the model a module runs must not depend on it. The record is written (fsync, rename)
only after the model passed its checks inside the running module, so a ``kill -9`` at
any step leaves the previous choice in force. At start, a record whose file is
missing, unreadable, not the recorded bytes or not loadable is not used: the module
runs its configured model, logged and counted in
``storefleet_model_fallbacks_total{model,reason}``.

Nothing here imports onnxruntime: the modules read the record before they load a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter

from edge_agent.errors import AgentError
from edge_agent.metrics import registry_scoped
from protocols.artifacts import SHA256_PATTERN

logger = logging.getLogger(__name__)

M = TypeVar("M")
_SHA256 = re.compile(SHA256_PATTERN)
CHUNK = 256 * 1024  # hashing reads: the same size as the artifact cache's


class ModelRejected(AgentError):
    """A candidate model that may not run (or keep running) in its module."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"{model} model rejected: {detail}")
        self.model = model
        self.detail = detail


class ModelSlot(Protocol[M]):
    """One running module's ONNX model, as the model installer replaces it.

    The contract a candidate must meet is the module's (its model code's ``check``),
    never the installer's. ``load`` and ``probe`` block (onnxruntime): run them in a
    thread. ``swap`` runs on the event loop, where a single assignment is atomic for
    every inference: a batch already running finishes with the model it started with.
    """

    name: str

    def load(self, path: Path) -> M:
        """The candidate at ``path``, loaded and checked: inputs, outputs and a smoke
        inference on a fixed input. Raises ``ModelRejected``."""
        ...

    def swap(self, model: M) -> M:
        """Put ``model`` in place of the running one; the one it replaced."""
        ...

    def probe(self) -> None:
        """One realistic input through the module's own path with the model now in place.
        Raises ``ModelRejected``."""
        ...


class ModelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.installs = Counter(
            "storefleet_model_installs", "model rollouts on this box, by model and result "
            "(succeeded, refused: failed its checks before the swap, replaced_back: failed "
            "the check after it, failed: not stored)", ["model", "result"], registry=registry)
        self.fallbacks = Counter(
            "storefleet_model_fallbacks", "an installed model not used at start, so the "
            "configured one runs (missing, unreadable, tampered, invalid)",
            ["model", "reason"], registry=registry)


@dataclass(frozen=True, slots=True)
class Installed:
    sha256: str
    version: str
    rollout_id: str


class InstalledModels:
    def __init__(self, data_dir: Path, *, registry: CollectorRegistry) -> None:
        self.root = data_dir / "models"
        self.metrics = registry_scoped(registry, "models", ModelMetrics)

    def _record(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def file(self, name: str, sha256: str) -> Path:
        return self.root / name / f"{sha256}.onnx"

    def current(self, name: str) -> Path | None:
        """The installed model's file, checked against its record; None (logged and
        counted unless nothing was ever installed) means: run the configured one."""
        try:
            text = self._record(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            self.fallback(name, "unreadable", f"{self._record(name)}: {err}")
            return None
        try:
            got = Installed(**json.loads(text))
            if not _SHA256.match(got.sha256):
                raise ValueError(f"not a sha256: {got.sha256!r}")
        except (ValueError, TypeError) as err:
            self.fallback(name, "unreadable", f"{self._record(name)}: {err}")
            return None
        path = self.file(name, got.sha256)
        try:
            digest = _sha256(path)
        except FileNotFoundError:
            self.fallback(name, "missing", f"{path} is gone")
            return None
        except OSError as err:
            self.fallback(name, "unreadable", f"{path}: {err}")
            return None
        if digest != got.sha256:
            self.fallback(name, "tampered", f"{path} is not the bytes installed")
            return None
        logger.info("%s model %s (rollout %s) from %s", name, got.version, got.rollout_id, path)
        return path

    def fallback(self, name: str, reason: str, detail: str) -> None:
        self.metrics.fallbacks.labels(model=name, reason=reason).inc()
        logger.error("installed %s model not used (%s), running the configured one: %s",
                     name, reason, detail)

    def keep(self, name: str, source: Path, sha256: str) -> Path:
        """Copy verified bytes out of the cache (fsync, rename): the candidate's file."""
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        final = self.file(name, sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_suffix(".part")
        with source.open("rb") as src, part.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, final)
        _fsync_dir(final.parent)
        return final

    def record(self, name: str, installed: Installed) -> None:
        """Make ``installed`` the model ``name`` starts with; other copies are dropped."""
        record = self._record(name)
        part = record.with_suffix(".part")
        part.write_text(json.dumps(asdict(installed)), encoding="utf-8")
        with part.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(part, record)
        _fsync_dir(self.root)
        keep = self.file(name, installed.sha256)
        for other in keep.parent.glob("*.onnx"):
            if other != keep:
                other.unlink(missing_ok=True)

    def discard(self, name: str, sha256: str) -> None:
        """Drop a candidate's copy that did not become the model (unless it is)."""
        path = self.file(name, sha256)
        if self.current_sha256(name) != sha256:
            path.unlink(missing_ok=True)

    def current_sha256(self, name: str) -> str | None:
        try:
            return str(json.loads(self._record(name).read_text(encoding="utf-8"))["sha256"])
        except (OSError, ValueError, TypeError, KeyError):
            return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
