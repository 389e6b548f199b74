"""Installers: what the ``updates`` module does with a verified artifact, by kind.

A rollout's ``install_artifact`` (decision 0040) is the same for every kind up to the
cache: fetch, check the signature, sha256 and target (decision 0036). What follows
depends on the artifact's kind, and each kind is one ``Installer``:

- ``firmware``: the device driver's ``firmware_update`` (``firmware.py``, decision 0039);
- ``agent`` and ``model``: their own files here, registered in ``INSTALLERS``.

An installer refuses an offer it cannot take at once (``refuse``, answered on the
command), says while its target is busy (``busy``: mid-sale, mid-vend, a cart in use;
the module defers the install until it is free or the offer's deadline passes, decision
0043), and otherwise turns the cached file into the last step, ``succeeded`` or
``failed`` with a short detail. It raises only for a bug: the module counts, logs and
reports that as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from protocols.artifacts import ArtifactKind
from protocols.messages import RolloutStep

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge_agent.kernel.module import Kernel


@dataclass(frozen=True, slots=True)
class Offer:
    """One ``install_artifact`` as an installer sees it."""

    rollout_id: str
    sha256: str
    target: str
    version: str
    device: str  # "agent" or the device id the artifact is for
    deadline_ms: int


class Installer(Protocol):
    def refuse(self, offer: Offer) -> str | None:
        """Why this offer cannot be taken (answered at once), or None."""

    def busy(self, offer: Offer) -> str | None:
        """Why the install must wait now (a short reason), or None: asked before
        ``install`` and again, with a backoff, until None or the offer's deadline."""

    async def install(self, offer: Offer, path: Path) -> tuple[RolloutStep, str]:
        """Install the verified file at ``path``; the last step and its detail."""


def installers(kernel: Kernel) -> dict[ArtifactKind, Installer]:
    """One installer per kind this box can install."""
    return {kind: make(kernel) for kind, make in INSTALLERS.items()}


def _firmware(kernel: Kernel) -> Installer:
    from edge_agent.installers.firmware import FirmwareInstaller

    return FirmwareInstaller(kernel)


def _model(kernel: Kernel) -> Installer:
    from edge_agent.installers.model import ModelInstaller

    return ModelInstaller(kernel)


def _agent(kernel: Kernel) -> Installer:
    import os

    from edge_agent.installers.agent import AgentInstaller
    from edge_agent.selfupdate.releases import Launched

    # Started by the launcher or not: its hand-over to this process (decision 0041).
    return AgentInstaller(kernel, launched=Launched.from_environ(os.environ))


INSTALLERS: dict[ArtifactKind, Callable[[Kernel], Installer]] = {
    ArtifactKind.AGENT: _agent,
    ArtifactKind.FIRMWARE: _firmware,
    ArtifactKind.MODEL: _model,
}
