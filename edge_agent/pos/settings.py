"""The till's settings: the ``[till]`` section of the agent's configuration.

    [till]
    cloud_api = "https://hq.example/"          # promotion snapshots, price books, ranges
    cloud_api_token = "..."                    # a device token bound to this store
    trusted_keys = ["<base64 Ed25519 public key>"]
    currency = "EUR"
    utc_offset_min = 60

    [till.store]                               # what receipts print about the store
    name = "Storefleet Market"
    address = ["Main St 1", "10115 Berlin"]
    tax_id = "DE123456789"
    time_zone = "Europe/Berlin"
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, SecretStr

from edge_agent.config import StoreSettings
from edge_agent.errors import ConfigError
from edge_agent.kernel.module import ModuleSettings


def _store(value: Any) -> StoreSettings:
    try:
        return StoreSettings.of(value)
    except ConfigError as err:  # as a ValueError, pydantic names the field
        raise ValueError(str(err)) from err


class TillSettings(ModuleSettings):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # The cloud's HTTP base URL for promotion snapshots, price books, coupon ranges and
    # online coupon redemption; None: the till prices from what is cached or provisioned.
    cloud_api: str | None = None
    cloud_api_token: SecretStr | None = None
    # The cloud's Ed25519 public keys (base64) that snapshot signatures must verify
    # against; empty: trust the cloud's current keys on first use (logged loudly).
    trusted_keys: tuple[str, ...] = ()
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    utc_offset_min: int = Field(default=0, ge=-14 * 60, le=14 * 60)
    refresh_interval_s: float = Field(default=300.0, gt=0)  # poll while the uplink is up
    offline_points_per_day: int = Field(default=2_000, ge=0)  # per card, while offline
    offline_stored_value_per_day: int = Field(default=5_000, ge=0)  # minor units, offline
    store: Annotated[StoreSettings, BeforeValidator(_store)] = Field(
        default_factory=StoreSettings)
