"""Updates (``[updates]``, decision 0036): the box's verified artifact cache, configured.

    [updates]
    cloud_api = "https://hq.example/"
    cloud_api_token = "..."                     # the store's device token
    trusted_keys = ["<base64 Ed25519 release public key>"]   # GET /api/v1/artifacts/keys
    cache_max_mb = 2048

Rollouts (agent, firmware, models) fetch through ``kernel.module("updates").cache``
(``edge_agent.kernel.artifacts.ArtifactCache``): the bytes land verified in
``<data_dir>/cas/`` or not at all. Unlike the till's promotions there is no trust on
first use: without a release key nothing could be installed safely, so ``trusted_keys``
is required. The agent command ``fetch_artifact {sha256, target}`` fetches one artifact
into the cache (a field tech pre-loading a release; a refusal is answered ``error`` with
its reason).

Rollouts (decision 0040) offer ``install_artifact {rollout_id, sha256, target, version,
device, deadline_ms}``: the command is accepted at once and the install runs as a task
(the downlink is not held for minutes): fetch into the cache (signature, sha256 and
target checked), then for firmware the device driver's ``firmware_update`` with the
cached path (each kind has its installer, ``edge_agent.installers``). Every step
(fetching, fetched, deferred, installing, succeeded, failed) is one
``rollout_status`` event through the outbox, with an id derived from (rollout, device,
step), so it survives an outage or a restart and a repeated step is stored once. An
install cut by a restart is not resumed here: the cloud marks it failed at its deadline.

Busy deferral (decision 0043): between fetched and installing, while the installer says
its target is busy (``Installer.busy``: mid-vend, a price book reaching the shelf, a
cart in use), the install waits: one ``deferred`` step with the reason, then a retry
with a bounded backoff (``busy_retry_min_s``..``busy_retry_max_s``) until the target is
free (installing follows) or the offer's deadline passes (``failed`` with ``busy:
<reason>``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from edge_agent.commands import CommandError, CommandRefused, CommandSpec
from edge_agent.installers import Installer, Offer, installers
from edge_agent.kernel.artifacts import (
    ArtifactApi,
    ArtifactCache,
    ArtifactError,
    ArtifactUnavailable,
)
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.metrics import registry_scoped
from protocols.artifacts import Sha256, Target, Version, kind_of_target
from protocols.backoff import Backoff
from protocols.ids import Id
from protocols.messages import ROLLOUT_DETAIL_MAX, RolloutStep
from protocols.signed import SignatureError, load_public_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge_agent.kernel.module import Kernel

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# uuid5 namespace of rollout_status event ids (fixed: stable across restarts).
ROLLOUT_EVENT_NAMESPACE = uuid.UUID("0b7d9a52-64c1-4c8e-8f0a-5e3a1d2c9b40")


class UpdatesSettings(ModuleSettings):
    cloud_api: str = Field(min_length=1)
    cloud_api_token: SecretStr | None = None
    # The cloud's release public keys (raw, base64); at least one, no trust on first use.
    trusted_keys: tuple[str, ...] = Field(min_length=1)
    # Bound of <data_dir>/cas; least recently used artifacts not in use are evicted.
    # 2 GiB: an agent release, a few firmware images and models, with room to spare.
    cache_max_mb: int = Field(default=2048, ge=1)
    # While a target is busy the install is retried with this backoff: a vend or a sale
    # takes seconds to a minute, so 1 s at first, then at most every 30 s.
    busy_retry_min_s: float = Field(default=1.0, gt=0)
    busy_retry_max_s: float = Field(default=30.0, gt=0)

    @field_validator("trusted_keys")
    @classmethod
    def _keys_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            load_public_keys(value)
        except SignatureError as err:
            raise ValueError(err.detail) from err
        return value


class FetchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: Sha256
    target: Target


class InstallArgs(BaseModel):
    """``install_artifact``: what a rollout offers (decision 0040)."""

    model_config = ConfigDict(extra="forbid")

    rollout_id: Id
    sha256: Sha256
    target: Target
    version: Version
    device: Id  # "agent" or the device the firmware is for
    deadline_ms: int = Field(ge=0)

    def offer(self) -> Offer:
        return Offer(rollout_id=self.rollout_id, sha256=self.sha256, target=self.target,
                     version=self.version, device=self.device, deadline_ms=self.deadline_ms)


def rollout_event_id(rollout_id: str, device: str, step: str) -> str:
    return str(uuid.uuid5(ROLLOUT_EVENT_NAMESPACE, f"{rollout_id}/{device}/{step}"))


class Updates(Module):
    name = "updates"
    Settings = UpdatesSettings

    def __init__(self, kernel: Kernel, settings: UpdatesSettings) -> None:
        super().__init__(kernel, settings)
        token = settings.cloud_api_token
        self.cache = ArtifactCache(
            kernel.data_dir / "cas",
            api=ArtifactApi(settings.cloud_api,
                            token=token.get_secret_value() if token else None),
            keys=load_public_keys(settings.trusted_keys), registry=kernel.registry,
            max_bytes=settings.cache_max_mb * MB)
        self.installers = installers(kernel)
        self._installs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._install_results = registry_scoped(kernel.registry, "rollout_installs", lambda r: (
            Counter("storefleet_rollout_installs", "rollout installs on this box, by result "
                    "(succeeded, failed, error: a bug, report_failed)", ["result"],
                    registry=r)))

    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        return {"fetch_artifact": CommandSpec(FetchArgs, self._fetch),
                "install_artifact": CommandSpec(InstallArgs, self._install)}

    async def _fetch(self, args: FetchArgs) -> dict[str, Any]:
        try:
            path = await self.cache.fetch(args.sha256, target=args.target)
        except ArtifactError as err:  # counted and logged by the cache
            raise CommandError(f"{err.reason}: {err.detail}") from err
        return {"sha256": args.sha256, "size": path.stat().st_size}

    async def _install(self, args: InstallArgs) -> dict[str, Any]:
        kind = kind_of_target(args.target)
        installer = self.installers.get(kind) if kind is not None else None
        if installer is None:
            raise CommandRefused(f"installing {args.target} artifacts is not supported yet")
        refusal = installer.refuse(args.offer())
        if refusal is not None:
            raise CommandRefused(refusal)
        key = (args.rollout_id, args.device)
        running = self._installs.get(key)
        if running is not None and not running.done():
            return {"rollout_id": args.rollout_id, "accepted": False, "running": True}
        self._installs[key] = asyncio.create_task(self._run_install(args, installer),
                                                  name=f"install-{args.rollout_id}")
        return {"rollout_id": args.rollout_id, "accepted": True}

    async def _report(self, args: InstallArgs, step: RolloutStep, detail: str = "") -> None:
        data = {"v": 1, "rollout_id": args.rollout_id, "sha256": args.sha256,
                "device": args.device, "step": step, "detail": detail[:ROLLOUT_DETAIL_MAX]}
        await self.kernel.sink.emit_event(
            "rollout_status", device_id=args.device, data=data,
            event_id=rollout_event_id(args.rollout_id, args.device, step))

    async def _run_install(self, args: InstallArgs, installer: Installer) -> None:
        try:
            step, detail = await self._install_steps(args, installer)
            self._install_results.labels(result=step).inc()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug: counted, logged, reported failed
            self._install_results.labels(result="error").inc()
            logger.exception("rollout %s: install on %s failed", args.rollout_id, args.device)
            step, detail = "failed", f"error: {type(err).__name__}: {err}"
        try:
            await self._report(args, step, detail)
        except Exception:  # the outbox refused it: the cloud fails the target at its deadline
            self._install_results.labels(result="report_failed").inc()
            logger.exception("rollout %s: %s report of %s not stored", args.rollout_id, step,
                             args.device)

    async def _install_steps(self, args: InstallArgs,
                             installer: Installer) -> tuple[RolloutStep, str]:
        """Fetch, then install; reports the steps on the way, returns the last one."""
        await self._report(args, "fetching")
        try:
            path = await self._fetch_until_deadline(args)
        except ArtifactError as err:  # counted and logged by the cache
            return "failed", f"{err.reason}: {err.detail}"
        await self._report(args, "fetched")
        while True:
            if (reason := await self._wait_until_free(args, installer)) is not None:
                return "failed", f"busy: {reason}"
            await self._report(args, "installing")
            step, detail = await installer.install(args.offer(), path)
            if step != "deferred":
                return step, detail
            # The device became busy between the check and the install (a customer
            # started a vend): nothing was changed, so wait until it is free again,
            # up to the offer's deadline.
            if self.kernel.clock.now_ms() >= args.offer().deadline_ms:
                self._install_results.labels(result="busy_past_deadline").inc()
                return "failed", detail
            self._install_results.labels(result="busy_at_install").inc()
            logger.info("rollout %s: %s became busy as the install began (%s); waiting",
                        args.rollout_id, args.device, detail)
            await asyncio.sleep(self.settings.busy_retry_min_s)

    async def _fetch_until_deadline(self, args: InstallArgs) -> Path:
        """The artifact in the cache. The cloud unreachable or a download cut (a failed
        pair is never offered again, so a network blip must not fail the device) is
        retried, resumed from what arrived, until the offer's deadline; a refusal
        (tampered, unsigned, wrong target) ends it at once."""
        s = self.settings
        backoff = Backoff(min_s=s.busy_retry_min_s,
                          max_s=max(s.busy_retry_min_s, s.busy_retry_max_s))
        while True:
            try:
                return await self.cache.fetch(args.sha256, target=args.target)
            except ArtifactUnavailable:
                left_s = (args.offer().deadline_ms - self.kernel.clock.now_ms()) / 1000
                if left_s <= 0:
                    raise
                self._install_results.labels(result="fetch_retried").inc()
                await asyncio.sleep(min(backoff.next(), left_s))

    async def _wait_until_free(self, args: InstallArgs, installer: Installer) -> str | None:
        """Defer while the target is busy: ``deferred`` is reported once (its event id
        is per step, so a spell is one event however long it lasts); returns None once
        the target is free, or the busy reason when the offer's deadline passed first."""
        offer = args.offer()
        s = self.settings
        backoff = Backoff(min_s=s.busy_retry_min_s,
                          max_s=max(s.busy_retry_min_s, s.busy_retry_max_s))
        deferred = False
        while (reason := installer.busy(offer)) is not None:
            left_s = (offer.deadline_ms - self.kernel.clock.now_ms()) / 1000
            if left_s <= 0:
                self._install_results.labels(result="busy_past_deadline").inc()
                logger.warning("rollout %s: %s still busy at the deadline (%s)",
                               args.rollout_id, args.device, reason)
                return reason
            if not deferred:
                deferred = True
                self._install_results.labels(result="deferred").inc()
                logger.info("rollout %s: %s busy (%s); install deferred", args.rollout_id,
                            args.device, reason)
                await self._report(args, "deferred", reason)
            await asyncio.sleep(min(backoff.next(), left_s))
        return None

    async def stop(self) -> None:
        for task in self._installs.values():
            task.cancel()
        await asyncio.gather(*self._installs.values(), return_exceptions=True)
        self._installs.clear()

    async def close(self) -> None:
        await self.cache.api.aclose()

    def diagnostics(self) -> dict[str, Any]:
        return {"cache": str(self.cache.root)}


MODULE = Updates
