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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from edge_agent.commands import CommandError, CommandSpec
from edge_agent.kernel.artifacts import ArtifactApi, ArtifactCache, ArtifactError
from edge_agent.kernel.module import Module, ModuleSettings
from protocols.artifacts import Sha256, Target
from protocols.signed import SignatureError, load_public_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge_agent.kernel.module import Kernel

MB = 1024 * 1024


class UpdatesSettings(ModuleSettings):
    cloud_api: str = Field(min_length=1)
    cloud_api_token: SecretStr | None = None
    # The cloud's release public keys (raw, base64); at least one, no trust on first use.
    trusted_keys: tuple[str, ...] = Field(min_length=1)
    # Bound of <data_dir>/cas; least recently used artifacts not in use are evicted.
    # 2 GiB: an agent release, a few firmware images and models, with room to spare.
    cache_max_mb: int = Field(default=2048, ge=1)

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

    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        return {"fetch_artifact": CommandSpec(FetchArgs, self._fetch)}

    async def _fetch(self, args: FetchArgs) -> dict[str, Any]:
        try:
            path = await self.cache.fetch(args.sha256, target=args.target)
        except ArtifactError as err:  # counted and logged by the cache
            raise CommandError(f"{err.reason}: {err.detail}") from err
        return {"sha256": args.sha256, "size": path.stat().st_size}

    async def close(self) -> None:
        await self.cache.api.aclose()

    def diagnostics(self) -> dict[str, Any]:
        return {"cache": str(self.cache.root)}


MODULE = Updates
