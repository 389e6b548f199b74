"""Cloud settings, validated once at start-up.

    settings = CloudSettings.from_env()        # STOREFLEET_* environment variables
    settings = CloudSettings(database_url="postgresql+psycopg://...", api_tokens={...})

Environment variables (all optional):

=================================  =========================================================
``STOREFLEET_DATABASE_URL``        SQLAlchemy URL (``sqlite:///./storefleet.db``)
``STOREFLEET_MQTT_URL``            ``mqtt://host:port`` or ``mqtts://host:8883`` (TLS)
                                  (``mqtt://127.0.0.1:1883``); a cluster's nodes:
                                  ``mqtt://n1:1883,n2:1883,n3:1883`` (decision 0062)
``STOREFLEET_MQTT_USERNAME``       broker user name
``STOREFLEET_MQTT_PASSWORD``       broker password
``STOREFLEET_MQTT_CA``             mqtts://: CA file of the broker's certificate
``STOREFLEET_MQTT_CERT``, ``_KEY`` mqtts://: client certificate and key (mTLS)
``STOREFLEET_SHARE_GROUP``         shared-subscription group; empty or ``none`` = plain
``STOREFLEET_INGEST_CLIENT_ID``    fixed MQTT client id of this ingest worker
``STOREFLEET_API_TOKENS``          ``token:role[@scope],...`` or a JSON object (see below)
``STOREFLEET_REQUIRE_TOKEN_SCOPE`` ``0``: allow store-manager/device tokens without a scope
``STOREFLEET_SCHEDULER_INTERVAL_S`` seconds between retail job runs; ``0`` = no scheduler
``STOREFLEET_KEEPALIVE_S``         MQTT keepalive seconds
``STOREFLEET_MAX_PAYLOAD``         largest accepted payload in bytes
``STOREFLEET_MEMBER_HASH_KEY``     server secret for keyed phone-number hashes (>= 16 chars)
``STOREFLEET_MEMBER_CODE_SECRET``  chain secret of the member codes' day keys (>= 16 chars)
``STOREFLEET_ORDER_PAYMENT_SECRET``  HMAC key of online orders' payment notices (>= 16
                                   chars; unset: orders are paid at the store)
``STOREFLEET_MEMBER_SNAPSHOT_INTERVAL_S`` seconds between member snapshots; ``0`` = on request
``STOREFLEET_SIGNING_KEY_FILE``    Ed25519 private key (PEM) signing promotion snapshots
``STOREFLEET_TRUSTED_KEYS``        older public keys still announced (base64, comma list)
``STOREFLEET_ARTIFACT_DIR``        where uploaded artifacts are kept (``./artifacts``); with
                                  an S3 store, where uploads are spooled (``tmp/``)
``STOREFLEET_ARTIFACT_STORE``      ``s3://bucket[/prefix]``: artifacts in an S3-compatible
                                  store instead (needs ``storefleet[s3]``; decision 0036)
``STOREFLEET_ARTIFACT_S3_ENDPOINT_URL`` the store's URL (MinIO, Ceph ...); unset = AWS S3
``STOREFLEET_ARTIFACT_S3_REGION``  the bucket's region (required with an S3 store)
``STOREFLEET_ARTIFACT_S3_ACCESS_KEY_ID``, ``_SECRET_ACCESS_KEY`` the store's credentials,
                                  both or neither (neither: boto3's own chain, e.g. an
                                  instance role)
``STOREFLEET_RELEASE_KEY_FILE``    Ed25519 private key (PEM) signing artifact manifests
``STOREFLEET_MAX_ARTIFACT_BYTES``  largest artifact upload in bytes (4 GiB)
``STOREFLEET_CURRENCY``            the chain's ISO currency (``EUR``)
``STOREFLEET_SENSITIVE_COMMAND_ROLES`` roles that may send sensitive commands, comma list
                                  (``hq-admin,store-manager``; decision 0044)
=================================  =========================================================

Secrets may be given as files instead (``storefleet cloud secrets init`` writes them):
``STOREFLEET_MQTT_PASSWORD_FILE``, ``STOREFLEET_MEMBER_HASH_KEY_FILE``,
``STOREFLEET_API_TOKENS_FILE`` and ``STOREFLEET_ARTIFACT_S3_SECRET_ACCESS_KEY_FILE`` hold
what the variable without ``_FILE`` would (surrounding white space stripped), so no
secret need sit in a process's environment or a unit file.
Setting both forms of one secret is an error.

Token scopes (decision 0015). A store-manager or device token is bound to stores and
gets 403 for any other store; hq-admin is chain-wide; a field-tech token is chain-wide
unless given stores and/or regions; a store-assistant token is bound to exactly one store
and its ``name`` is the assistant's id (decision 0065)::

    STOREFLEET_API_TOKENS='tokA:hq-admin,tokB:store-manager@s1,tokC:device@s1|s2,tokD:field-tech@region=north|s9'
    STOREFLEET_API_TOKENS='{"tokB": {"role": "store-manager", "stores": ["s1"], "name": "ann"},
                            "tokA": "hq-admin"}'

A token's ``name`` (JSON form only) is who its commands are recorded as sent by
(decision 0044); a token without one is recorded as ``<role>:<fingerprint>``, the first
8 hex digits of the token's SHA-256, which tells tokens apart without revealing them.

A store-manager or device token without a scope is refused at start-up (secure by
default). ``STOREFLEET_REQUIRE_TOKEN_SCOPE=0`` lets such tokens act chain-wide, for a
migration; each one is then logged as a warning at start-up.

Tokens that look like placeholders (``changeme``, ``secret`` ...) or are shorter than
12 characters are refused, so a copied example config never reaches production.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cloud.enrolment.settings import EnrolmentSettings
from protocols.broker import BrokerAddress, BrokerAddressError
from protocols.codec import DEFAULT_MAX_PAYLOAD
from protocols.topics import valid_id

ENV_PREFIX = "STOREFLEET_"

# Lower-cased values that are obviously copied from an example and never a real secret.
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "token", "example", "test",
     "xxx", "todo", "default", "admin"}
)
# Shorter tokens can be guessed; 12 chars of a random alphabet is the floor we accept.
MIN_TOKEN_LEN = 12
# S3's bucket naming rule (3-63 lower-case letters, digits, dots, hyphens), which
# S3-compatible stores follow too.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3Location(NamedTuple):
    bucket: str
    prefix: str  # "" or a key prefix without leading/trailing slashes


def parse_s3_location(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` as bucket and prefix; anything else is a ValueError."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep or not _BUCKET.match(bucket):
        raise ValueError(f"artifact_store: {url!r} is not s3://bucket[/prefix] with a valid "
                         "bucket name (3-63 chars: a-z, 0-9, '.', '-')")
    return S3Location(bucket=bucket, prefix=prefix.strip("/"))


class Role(StrEnum):
    HQ_ADMIN = "hq-admin"
    STORE_MANAGER = "store-manager"
    FIELD_TECH = "field-tech"
    DEVICE = "device"
    # A shop assistant (decision 0065): one named person at exactly one store.
    STORE_ASSISTANT = "store-assistant"


# Roles bound to stores: without a scope such a token is a legacy, chain-wide one.
STORE_BOUND_ROLES = frozenset({Role.STORE_MANAGER, Role.DEVICE, Role.STORE_ASSISTANT})
# Roles that may be narrowed to stores/regions but are chain-wide by default.
SCOPABLE_ROLES = STORE_BOUND_ROLES | {Role.FIELD_TECH}


class TokenGrant(BaseModel):
    """What one API token may do: a role and, for store-bound roles, where.

    ``stores`` / ``regions`` empty = chain-wide. Regions are resolved to stores through
    ``store_regions`` when a request is checked, so moving a store between regions moves
    its technicians' access with it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    stores: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    # Who holds the token ("ann", "tech-north-1"): the sender recorded with its commands.
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not valid_id(value):
            raise ValueError(f"token name {value!r} must be 1-64 chars of letters, digits, "
                             "'-', '_', '.', ':'")
        return value

    def sender(self, token: str) -> str:
        """The name recorded as this token's commands' sender (decision 0044)."""
        if self.name is not None:
            return self.name
        return f"{self.role.value}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"

    @field_validator("stores", "regions")
    @classmethod
    def _check_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ident in value:
            if not valid_id(ident):
                raise ValueError(f"scope entry {ident!r} is not a valid store/region id")
        return tuple(sorted(set(value)))

    @property
    def scoped(self) -> bool:
        return bool(self.stores or self.regions)


def _grant_of(value: Any) -> Any:
    """A bare role (the old format) is a grant without a scope."""
    if isinstance(value, str | Role):
        return {"role": value}
    return value


class CloudSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = "sqlite:///./storefleet.db"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    # mqtts:// only: the CA of the broker's certificate (None: the system's), and a client
    # certificate and key when the broker's listener asks for one (decision 0032).
    mqtt_ca: str | None = None
    mqtt_cert: str | None = None
    mqtt_key: str | None = None
    # None = plain subscriptions, for brokers without $share (the embedded amqtt).
    share_group: str | None = "storefleet-ingest"
    ingest_client_id: str = "storefleet-ingest-1"
    # token -> grant; a bare role string is accepted (old format, no scope).
    api_tokens: dict[str, TokenGrant] = Field(default_factory=dict)
    # Refuse store-manager/device tokens without a store scope; False lets them act
    # chain-wide (a migration aid, warned about at start-up).
    require_token_scope: bool = True
    # Retail jobs (commission settlement, points and coupon expiry) in the API process:
    # seconds between runs; 0 = no scheduler (tests, or a cron calling the job routes).
    # 300 s: settlement is due days after a sale, so minutes of lag cost nothing.
    scheduler_interval_s: float = Field(default=300.0, ge=0, le=86_400)
    # Rollouts (decision 0040): seconds between offer ticks (offers of the current wave,
    # per-target deadlines); 0 = offers only when a rollout is created or resumed.
    rollout_interval_s: float = Field(default=5.0, ge=0, le=3600)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_payload: int = Field(default=DEFAULT_MAX_PAYLOAD, ge=1024, le=16 * 1024 * 1024)
    # Loyalty: the HMAC key of phone-number hashes. None = phone lookups are refused
    # (a random per-process key would silently orphan every stored hash on restart).
    member_hash_key: SecretStr | None = None
    # Members at the store (decision 0064): the chain secret the members' day keys are
    # derived from (member codes); None = no member codes, no member snapshots.
    member_code_secret: SecretStr | None = None
    # Online orders (decision 0067): the HMAC key of the payment gateway's notices; set,
    # orders are paid online and dispatched on payment; None = collected at the store.
    order_payment_secret: SecretStr | None = None
    # Seconds between publishing every store's member snapshot; 0 = only on request.
    # A day: the snapshot carries today's and tomorrow's keys.
    member_snapshot_interval_s: float = Field(default=0.0, ge=0, le=86_400)
    # Promotions: the Ed25519 signing key (PEM file); None = an ephemeral key per
    # process (demo, tests), logged as a warning. trusted_keys: previous public keys
    # (raw, base64) still listed for stores during a key rotation.
    signing_key_file: str | None = None
    trusted_keys: tuple[str, ...] = ()
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    # Store identities: provisioning, enrolment, revocation (cloud.enrolment.settings).
    enrolment: EnrolmentSettings = Field(default_factory=EnrolmentSettings)
    # Artifacts (decision 0036): blobs by sha256 under artifact_dir; manifests signed with
    # the release key (PEM file; None = an ephemeral key per process, warned about, as
    # for promotions). 4 GiB: an agent wheel or ONNX model is far smaller.
    artifact_dir: str = "./artifacts"
    release_key_file: str | None = None
    max_artifact_bytes: int = Field(default=4 * 1024**3, ge=1, le=64 * 1024**3)
    # None = blobs in artifact_dir; "s3://bucket[/prefix]" = in an S3-compatible store
    # (cloud.artifacts.s3), reached with the artifact_s3_* settings.
    artifact_store: str | None = None
    artifact_s3_endpoint_url: str | None = None
    artifact_s3_region: str | None = None
    artifact_s3_access_key_id: str | None = None
    artifact_s3_secret_access_key: SecretStr | None = None
    # Who may send a sensitive command (protocols.commands: open a cash drawer, unlock a
    # cabinet door), with a stated reason (decision 0044). Store managers answer for
    # their store's cash and stock (and their tokens are bound to their stores); field
    # techs service devices and have no business in a drawer or a cabinet.
    sensitive_command_roles: frozenset[Role] = frozenset({Role.HQ_ADMIN, Role.STORE_MANAGER})

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @model_validator(mode="after")
    def _check_mqtt_tls(self) -> CloudSettings:
        """TLS files need mqtts://, come as certificate and key, and must be readable:
        refused at start-up with the setting named, not at every reconnect."""
        address = self.mqtt
        for setting, path in address.tls_files(prefix="mqtt"):
            try:
                with path.open("rb") as file:
                    file.read(1)
            except OSError as err:
                raise ValueError(f"{setting}: cannot read {path}: {err.strerror}") from err
        return self

    @field_validator("artifact_store")
    @classmethod
    def _check_artifact_store(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "local"):
            return None
        parse_s3_location(value)
        return value

    @model_validator(mode="after")
    def _check_artifact_s3(self) -> CloudSettings:
        """An S3 store is refused at start-up unless it can be reached as configured:
        a region, credentials as a pair, an http(s) endpoint; S3 settings without an
        S3 store are refused too (they would be silently ignored)."""
        given = [name for name in ("artifact_s3_endpoint_url", "artifact_s3_region",
                                   "artifact_s3_access_key_id",
                                   "artifact_s3_secret_access_key")
                 if getattr(self, name) is not None]
        if self.artifact_store is None:
            if given:
                raise ValueError(f"{', '.join(given)} given without an S3 store: set "
                                 "STOREFLEET_ARTIFACT_STORE=s3://bucket[/prefix]")
            return self
        if not self.artifact_s3_region:
            raise ValueError("artifact_store is an S3 store but artifact_s3_region is not "
                             "set (STOREFLEET_ARTIFACT_S3_REGION, e.g. us-east-1)")
        if (self.artifact_s3_access_key_id is None) != \
                (self.artifact_s3_secret_access_key is None):
            raise ValueError("artifact_s3_access_key_id and artifact_s3_secret_access_key "
                             "go together: give both, or neither to use boto3's own "
                             "credential chain")
        endpoint = self.artifact_s3_endpoint_url
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            raise ValueError(f"artifact_s3_endpoint_url: {endpoint!r} is not an http(s) URL")
        return self

    @property
    def artifact_s3(self) -> S3Location | None:
        """The S3 bucket and prefix of the artifact store; None for the local directory."""
        return None if self.artifact_store is None else parse_s3_location(self.artifact_store)

    @field_validator("share_group", "ingest_client_id")
    @classmethod
    def _check_ident(cls, value: str | None) -> str | None:
        if value is not None and not valid_id(value):
            raise ValueError("must be 1-64 chars of letters, digits, '-', '_', '.', ':'")
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _bare_roles(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {token: _grant_of(grant) for token, grant in value.items()}
        return value

    @field_validator("api_tokens")
    @classmethod
    def _refuse_placeholders(cls, value: dict[str, TokenGrant]) -> dict[str, TokenGrant]:
        for token, grant in value.items():
            if grant.scoped and grant.role not in SCOPABLE_ROLES:
                raise ValueError(f"API token {token[:4]!r}...: role {grant.role.value!r} "
                                 "is chain-wide and takes no store/region scope")
            if grant.role is Role.STORE_ASSISTANT and (
                    len(grant.stores) != 1 or grant.regions or grant.name is None):
                # Never chain-wide, even with require_token_scope off: the name is the
                # assistant's id, the one store where they work (decision 0065).
                raise ValueError(f"API token {token[:4]!r}... (store-assistant) needs "
                                 "exactly one store, no region and a name (the "
                                 "assistant's id): {\"role\": \"store-assistant\", "
                                 "\"stores\": [\"S001\"], \"name\": \"ann\"}")
            if token.strip().lower() in PLACEHOLDER_TOKENS or len(token) < MIN_TOKEN_LEN:
                raise ValueError(
                    f"API token {token[:4]!r}... is a placeholder or shorter than "
                    f"{MIN_TOKEN_LEN} chars; generate one with `python -c "
                    "'import secrets; print(secrets.token_urlsafe(24))'`"
                )
        return value

    @model_validator(mode="after")
    def _check_scopes(self) -> CloudSettings:
        if self.require_token_scope:
            for token, grant in self.api_tokens.items():
                if grant.role in STORE_BOUND_ROLES and not grant.scoped:
                    raise ValueError(f"API token {token[:4]!r}... ({grant.role.value}) has no "
                                     "store scope; bind it to stores (token:role@s1|s2) "
                                     "or set STOREFLEET_REQUIRE_TOKEN_SCOPE=0")
        return self

    def unscoped_store_tokens(self) -> list[str]:
        """Prefixes of store-manager/device tokens without a scope (legacy, chain-wide)."""
        return [token[:4] + "..." for token, grant in self.api_tokens.items()
                if grant.role in STORE_BOUND_ROLES and not grant.scoped]

    @field_validator("sensitive_command_roles")
    @classmethod
    def _no_device_role(cls, value: frozenset[Role]) -> frozenset[Role]:
        if Role.DEVICE in value:
            # A device token is a machine's credential; a reason is a person's statement.
            raise ValueError("sensitive_command_roles: the device role may not send "
                             "sensitive commands")
        return value

    @field_validator("member_hash_key", "member_code_secret", "order_payment_secret")
    @classmethod
    def _check_hash_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            # 16 chars: below that the key could be brute-forced together with the
            # small space of phone numbers (or of member ids and days).
            if raw.strip().lower() in PLACEHOLDER_TOKENS or len(raw) < 16:
                raise ValueError("the key is a placeholder or shorter than 16 chars")
        return value

    @property
    def mqtt(self) -> BrokerAddress:
        """The broker with the cloud services' credentials and TLS files."""
        address = parse_mqtt_url(self.mqtt_url).with_credentials(
            username=self.mqtt_username, password=self.mqtt_password)
        try:
            return address.with_tls(ca_file=self.mqtt_ca, cert_file=self.mqtt_cert,
                                    key_file=self.mqtt_key, prefix="mqtt")
        except BrokerAddressError as err:
            raise ValueError(str(err)) from err

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> CloudSettings:
        """Settings from ``STOREFLEET_*`` variables; keyword overrides win (CLI options)."""
        env = _with_secret_files(os.environ if environ is None else environ)
        data: dict[str, Any] = {}
        for name in ("database_url", "mqtt_url", "mqtt_username", "mqtt_password",
                     "mqtt_ca", "mqtt_cert", "mqtt_key",
                     "ingest_client_id", "keepalive_s", "max_payload"):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw not in (None, ""):
                data[name] = int(raw) if name in ("keepalive_s", "max_payload") else raw
        if (group := env.get(ENV_PREFIX + "SHARE_GROUP")) is not None:
            data["share_group"] = None if group.strip().lower() in ("", "none", "-") else group
        if raw_tokens := env.get(ENV_PREFIX + "API_TOKENS"):
            data["api_tokens"] = parse_tokens(raw_tokens)
        for name in ("member_hash_key", "member_code_secret", "order_payment_secret",
                     "signing_key_file", "currency",
                     "artifact_dir", "release_key_file", "artifact_store",
                     "artifact_s3_endpoint_url", "artifact_s3_region", "artifact_s3_access_key_id",
                     "artifact_s3_secret_access_key"):
            if raw := env.get(ENV_PREFIX + name.upper()):
                data[name] = raw
        if raw := env.get(ENV_PREFIX + "REQUIRE_TOKEN_SCOPE"):
            data["require_token_scope"] = raw.strip().lower() not in ("0", "false", "no", "off")
        if raw := env.get(ENV_PREFIX + "MAX_ARTIFACT_BYTES"):
            data["max_artifact_bytes"] = int(raw)
        if raw := env.get(ENV_PREFIX + "SCHEDULER_INTERVAL_S"):
            data["scheduler_interval_s"] = float(raw)
        if raw := env.get(ENV_PREFIX + "ROLLOUT_INTERVAL_S"):
            data["rollout_interval_s"] = float(raw)
        if raw := env.get(ENV_PREFIX + "MEMBER_SNAPSHOT_INTERVAL_S"):
            data["member_snapshot_interval_s"] = float(raw)
        if (raw := env.get(ENV_PREFIX + "SENSITIVE_COMMAND_ROLES")) is not None:
            data["sensitive_command_roles"] = frozenset(
                r.strip() for r in raw.split(",") if r.strip())
        if raw_keys := env.get(ENV_PREFIX + "TRUSTED_KEYS"):
            data["trusted_keys"] = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
        data["enrolment"] = EnrolmentSettings.from_env(env, ENV_PREFIX)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


# The secrets that may come from a file named by ``<VARIABLE>_FILE``.
SECRET_FILE_VARIABLES = ("MQTT_PASSWORD", "MEMBER_HASH_KEY", "API_TOKENS",
                         "BROKER_ADMIN_PASSWORD", "ARTIFACT_S3_SECRET_ACCESS_KEY",
                         "ORDER_PAYMENT_SECRET")


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each ``STOREFLEET_<SECRET>_FILE`` read into ``STOREFLEET_<SECRET>``."""
    merged = dict(env)
    for name in SECRET_FILE_VARIABLES:
        file_var, var = f"{ENV_PREFIX}{name}_FILE", ENV_PREFIX + name
        path = env.get(file_var)
        if not path:
            continue
        if env.get(var):
            raise ValueError(f"{var} and {file_var} are both set: give the secret once")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ValueError(f"{file_var}: cannot read {path}: {err.strerror}") from err
        if not value:
            raise ValueError(f"{file_var}: {path} is empty")
        merged[var] = value
    return merged


# token:role[@scope] where scope = entries separated by "|": a store id, or
# "region=<id>". The role is matched by name, so tokens and store ids may contain ":".
_TOKEN_ENTRY = re.compile(
    r"^(?P<token>.+):(?P<role>" + "|".join(re.escape(r.value) for r in Role)
    + r")(?:@(?P<scope>.+))?$")


def parse_tokens(raw: str) -> dict[str, Any]:
    """``tok1:hq-admin,tok2:store-manager@s1|s2,tok3:field-tech@region=north`` or a JSON
    object ``{"tok1": "hq-admin", "tok2": {"role": "store-manager", "stores": ["s1"]}}``."""
    raw = raw.strip()
    if raw.startswith("{"):
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("STOREFLEET_API_TOKENS must be a JSON object")
        return {str(k): v if isinstance(v, dict) else str(v) for k, v in doc.items()}
    tokens: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        match = _TOKEN_ENTRY.match(pair)
        if match is None:
            # Not a known role: keep the old split so validation names the bad role.
            token, sep, role = pair.rpartition(":")
            if not sep or not token:
                raise ValueError("STOREFLEET_API_TOKENS entries must be token:role[@scope]")
            tokens[token] = role
            continue
        scope = match["scope"]
        if scope is None:
            tokens[match["token"]] = match["role"]
            continue
        entries = [e.strip() for e in scope.split("|") if e.strip()]
        tokens[match["token"]] = {
            "role": match["role"],
            "stores": [e for e in entries if not e.startswith("region=")],
            "regions": [e.removeprefix("region=") for e in entries if e.startswith("region=")],
        }
    return tokens


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``protocols.broker.BrokerAddress.parse`` with its error as pydantic's ValueError."""
    try:
        return BrokerAddress.parse(url, setting="mqtt_url")
    except BrokerAddressError as err:
        raise ValueError(str(err)) from err
