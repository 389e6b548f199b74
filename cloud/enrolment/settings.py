"""Enrolment settings (decision 0035), part of ``CloudSettings`` as ``enrolment``.

=========================================  ==============================================
``STOREFLEET_CA_DIR``                       the CA made by ``storefleet cloud pki init``
                                            (``ca.crt``, ``ca.key``); unset: no provisioning
``STOREFLEET_STORE_BROKER_URL``             the broker as stores reach it, written into
                                            each bundle (``mqtts://cloud.example.net:8883``)
``STOREFLEET_CRL_FILE``                     the CRL the broker's ``crlfile`` names
                                            (``<CA_DIR>/crl.pem``)
``STOREFLEET_BROKER_PID_FILE``              the broker's pid file: SIGHUP after a CRL change
                                            (Mosquitto reloads ``crlfile`` on SIGHUP)
``STOREFLEET_BROKER_ADMIN_USERNAME``        the dynamic security plugin's admin (``admin``)
``STOREFLEET_BROKER_ADMIN_PASSWORD[_FILE]`` its password
``STOREFLEET_REQUIRE_ENROLMENT``            ``1``: ingest refuses births of stores not
                                            enrolled (``not_enrolled``)
``STOREFLEET_ENROL_TOKEN_TTL_S``            how long a one-time token is valid (86400)
=========================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from protocols.broker import BrokerAddress, BrokerAddressError

_TRUE = ("1", "true", "yes", "on")


class EnrolmentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_dir: str | None = None
    store_broker_url: str | None = None
    crl_file: str | None = None
    broker_pid_file: str | None = None
    broker_admin_username: str = "admin"
    broker_admin_password: SecretStr | None = None
    # Off by default so existing deployments and the demo keep creating stores on their
    # first birth; production turns it on (decision 0035).
    required: bool = False
    # A day: long enough to ship a box and plug it in, short enough that a token lost
    # on the way is worthless soon.
    token_ttl_s: int = Field(default=86_400, ge=60, le=30 * 86_400)

    @field_validator("store_broker_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        """Refused at start-up, not in every bundle the boxes then cannot use."""
        if value is not None:
            try:
                BrokerAddress.parse(value, setting="store_broker_url")
            except BrokerAddressError as err:
                raise ValueError(str(err)) from err
        return value

    @property
    def crl_path(self) -> Path | None:
        if self.crl_file:
            return Path(self.crl_file)
        return Path(self.ca_dir) / "crl.pem" if self.ca_dir else None

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> EnrolmentSettings:
        data: dict[str, Any] = {}
        for name in ("ca_dir", "store_broker_url", "crl_file", "broker_pid_file",
                     "broker_admin_username", "broker_admin_password"):
            if raw := env.get(prefix + name.upper()):
                data[name] = raw
        if raw := env.get(prefix + "REQUIRE_ENROLMENT"):
            data["required"] = raw.strip().lower() in _TRUE
        if raw := env.get(prefix + "ENROL_TOKEN_TTL_S"):
            data["token_ttl_s"] = int(raw)
        return cls.model_validate(data)
