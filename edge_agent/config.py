"""Agent settings: one frozen dataclass, validated once at start-up.

    cfg = AgentConfig(store_id="s-001", data_dir=Path("/var/lib/storefleet"))
    cfg = load_config(Path("agent.toml"), store_id="s-001")   # file, then overrides

A TOML file holds the kernel's fields under ``[agent]`` and each module's settings in
its own section (``[till]``, ``[shelf]``, ``[in_aisle]``, ``[vision]``: see
``edge_agent/modules/``). Devices driven by the agent's drivers are a list of tables:

    [[agent.devices]]
    id = "ble-scanner"
    family = "beacon"
    model = "bluez"
    options = { backend = "bleak", adapter = "hci0" }

What the store prints about itself on receipts is one table of the till's
(``StoreSettings``):

    [till.store]
    name = "Storefleet Market"
    address = ["Main St 1", "10115 Berlin"]
    tax_id = "DE123456789"            # printed as "VAT ID DE123456789"
    time_zone = "Europe/Berlin"       # IANA name; unset: the till's utc_offset_min
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent import __version__
from edge_agent.errors import ConfigError
from protocols.broker import BrokerAddress, BrokerAddressError
from protocols.topics import valid_id

if TYPE_CHECKING:
    from edge_agent.drivers.base import DeviceConfig

EMBEDDED = "embedded"
MiB = 1024 * 1024
DAY_S = 24 * 3600

Synchronous = Literal["NORMAL", "FULL"]


def _broker(url: str, *, setting: str) -> BrokerAddress:
    """``protocols.broker.BrokerAddress.parse`` with its error as this package's."""
    try:
        return BrokerAddress.parse(url, setting=setting)
    except BrokerAddressError as err:
        raise ConfigError(err.setting, err.detail) from err


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """The store as its receipts name it (``[till.store]``; a dict is accepted).

    ``name`` empty: receipts print "Store {store_id}". ``tax_id`` None: no tax line.
    ``time_zone`` None: receipts print the time at the till's fixed ``utc_offset_min``
    (the offset pricing uses); an IANA name follows DST on its own.
    """

    name: str = ""
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    tax_id_label: str = "VAT ID"  # "GST No", "USt-IdNr." ... as the country requires
    time_zone: str | None = None

    def __post_init__(self) -> None:
        optional = ("tax_id", "time_zone")
        for name in ("name", "tax_id_label", *optional):
            value = getattr(self, name)
            if not isinstance(value, str) and (value is not None or name not in optional):
                raise ConfigError(f"store.{name}", f"{value!r} is not text")
        if isinstance(self.address, str) or not all(isinstance(a, str) for a in self.address):
            raise ConfigError("store.address", "must be a list of lines")
        object.__setattr__(self, "address", tuple(self.address))
        # A receipt header holds 8 lines: name, up to 6 address lines, the tax line.
        if len(self.address) > 6:
            raise ConfigError("store.address", "at most 6 lines")
        if self.time_zone is not None:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise ConfigError("store.time_zone",
                                  f"{self.time_zone!r} is not an IANA time zone") from err

    @classmethod
    def of(cls, value: StoreSettings | dict[str, Any]) -> StoreSettings:
        if isinstance(value, StoreSettings):
            return value
        if not isinstance(value, dict):
            raise ConfigError("store", "must be a [till.store] table")
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"store.{unknown[0]}", "unknown setting")
        return cls(**value)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    store_id: str
    data_dir: Path
    # One broker, or a cluster's nodes: mqtts://n1:8883,n2:8883,n3:8883 (each session
    # connects to the next node, decision 0062).
    cloud_url: str = "mqtt://127.0.0.1:1883"
    # Credentials in fields win over credentials in cloud_url. The password is best
    # read from a file (cloud_password_file, 0600), never typed on a command line; the
    # user name defaults to the store id (its identity on the broker, decision 0027).
    cloud_username: str | None = None
    cloud_password: str | None = None
    cloud_password_file: Path | None = None
    # mqtts:// only: the CA that signed the broker's certificate (None: the system's),
    # and the store's client certificate and key for mTLS (CN = store id, decision 0032).
    cloud_ca: Path | None = None
    cloud_cert: Path | None = None
    cloud_key: Path | None = None
    # "embedded" hosts an amqtt broker on local_bus_host:local_bus_port (demo);
    # otherwise the mqtt:// URL of the store's own broker (Mosquitto in production).
    local_bus: str = EMBEDDED
    local_bus_host: str = "127.0.0.1"
    local_bus_port: int = 1884  # next to 1883 so a box can run both a cloud and a local broker
    metrics_port: int = 9108  # 0 disables the metrics endpoint
    metrics_host: str = "0.0.0.0"  # scraped by a Prometheus elsewhere on the store network
    keepalive_s: int = 10  # a dead uplink is noticed (and the Death published) within 1.5x this
    outbox_max_bytes: int = 256 * MiB
    outbox_max_age_s: float = 7 * DAY_S
    # FULL: fsync on every commit, so an acknowledged local event survives power loss too;
    # NORMAL survives kill -9 but may lose the last commits on power loss (decision 0003).
    outbox_synchronous: Synchronous = "FULL"
    publish_window: int = 100  # QoS 1 publishes in flight (awaiting PUBACK) on the uplink
    local_batch_max: int = 500  # local messages committed to the outbox in one transaction
    local_queue_max: int = 10_000  # received-but-unprocessed local messages held in memory
    telemetry_interval_s: float = 1.0  # telemetry batching period (per device)
    telemetry_buffer_max: int = 20_000  # samples held for the next telemetry flush
    birth_debounce_s: float = 1.0  # device set changes within this window -> one rebirth
    # Drain the outbox only after cloud ingest answered this session's birth
    # (``topics.ready``): after a broker restart, Mosquitto 2.0 forgets shared
    # subscriptions until ingest re-subscribes, and drops what arrives meanwhile.
    await_cloud_ready: bool = True
    cloud_ready_timeout_s: float = 10.0  # no answer by then: publish the birth again
    # Keep each event in the outbox until cloud ingest acknowledged its commit
    # (``topics.ack``, decision 0028): a broker's PUBACK does not survive its crash.
    # None: as ``await_cloud_ready`` (a deployment with no cloud ingest has neither).
    await_cloud_ack: bool | None = None
    # An event sent but not acknowledged by the cloud this long is sent again; the wait
    # doubles at each further try, up to the max (a long ingest outage costs a few
    # copies per event, not one per timeout).
    cloud_ack_timeout_s: float = 30.0
    cloud_ack_timeout_max_s: float = 600.0
    # Events sent and not yet acknowledged by the cloud, at most (beyond: wait). Bounds
    # memory and what one ingest outage puts into the broker's queue per store: a few
    # minutes of a busy store (decision 0025 measured ~20 events/s).
    cloud_ack_window: int = 10_000
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    shutdown_drain_s: float = 3.0  # on a clean stop, time given to empty the outbox
    agent_version: str = __version__
    # Driver-managed devices (serial, BLE, TCP, cart fleets); the desired shadow's
    # ``devices`` adds to / overrides these by id. Dicts are accepted and converted.
    devices: tuple[DeviceConfig, ...] = ()
    health_interval_s: float = 5.0  # driver health -> reported shadow, metrics, birth
    # The modules' own sections, by module name ([till], [shelf], [in_aisle], [vision],
    # or another package's module): each module validates its section with its own
    # settings model (edge_agent.kernel.module, decision 0030).
    modules: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not valid_id(self.store_id):
            raise ConfigError("store_id", f"{self.store_id!r} is not a valid id")
        object.__setattr__(self, "devices", _device_configs(self.devices))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        modules = {str(k): dict(v) for k, v in dict(self.modules).items()
                   if isinstance(v, Mapping)}
        if len(modules) != len(self.modules):
            raise ConfigError("modules", "each module's settings must be a table")
        object.__setattr__(self, "modules", modules)
        if self.cloud_password_file is not None:
            object.__setattr__(self, "cloud_password_file", Path(self.cloud_password_file))
            if self.cloud_password is not None:
                raise ConfigError("cloud_password_file", "give the password or a file, not both")
        for name in ("cloud_ca", "cloud_cert", "cloud_key"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        self.cloud  # noqa: B018 - validates cloud_url, reads the password file, checks TLS
        if self.local_bus != EMBEDDED:
            _broker(self.local_bus, setting="local_bus")
        for name in ("local_bus_port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(name, f"{value} is not a TCP port")
        positive = (
            "keepalive_s",
            "outbox_max_bytes",
            "outbox_max_age_s",
            "publish_window",
            "local_batch_max",
            "local_queue_max",
            "telemetry_interval_s",
            "telemetry_buffer_max",
            "reconnect_min_s",
            "cloud_ready_timeout_s",
            "cloud_ack_timeout_s",
            "cloud_ack_timeout_max_s",
            "cloud_ack_window",
            "reconnect_max_s",
            "health_interval_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be > 0")
        if self.outbox_synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("outbox_synchronous", "must be NORMAL or FULL")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("reconnect_max_s", "must be >= reconnect_min_s")
        if self.cloud_ack_timeout_max_s < self.cloud_ack_timeout_s:
            raise ConfigError("cloud_ack_timeout_max_s", "must be >= cloud_ack_timeout_s")

    @property
    def cloud(self) -> BrokerAddress:
        addr = _broker(self.cloud_url, setting="cloud_url")
        password = self.cloud_password or addr.password
        if self.cloud_password_file is not None:
            password = _read_secret(self.cloud_password_file, setting="cloud_password_file")
        username = self.cloud_username or addr.username
        if password is not None and username is None:
            username = self.store_id
        try:
            addr = addr.with_tls(ca_file=self.cloud_ca, cert_file=self.cloud_cert,
                                 key_file=self.cloud_key, prefix="cloud")
        except BrokerAddressError as err:
            raise ConfigError(err.setting, err.detail) from err
        for setting, path in addr.tls_files(prefix="cloud"):
            _check_readable(path, setting=setting)
        return dataclasses.replace(addr, username=username, password=password)

    @property
    def cloud_acks(self) -> bool:
        """Whether outbox rows wait for the cloud's ``ack`` (else the broker's PUBACK)."""
        return self.await_cloud_ready if self.await_cloud_ack is None else self.await_cloud_ack

    @property
    def embedded_local_bus(self) -> bool:
        return self.local_bus == EMBEDDED

    @property
    def local(self) -> BrokerAddress:
        """The store-local broker the agent's local client connects to."""
        if self.embedded_local_bus:
            return BrokerAddress(host=self.local_bus_host, port=self.local_bus_port)
        return _broker(self.local_bus, setting="local_bus")

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"


def _device_configs(values: Any) -> tuple[DeviceConfig, ...]:
    # Imported here: importing ``edge_agent.drivers`` loads every driver family, and a
    # family may import agent modules that import this one.
    from edge_agent.drivers.base import DeviceConfig, DriverError

    if not isinstance(values, list | tuple):
        raise ConfigError("devices", "must be a list of [[agent.devices]] tables")
    out: list[DeviceConfig] = []
    for value in values:
        if isinstance(value, DeviceConfig):
            config = value
        elif isinstance(value, dict):
            try:
                config = DeviceConfig.from_dict(value)
            except DriverError as err:
                raise ConfigError("devices", str(err)) from err
        else:
            raise ConfigError("devices", f"{value!r} is not a table")
        if not valid_id(config.device_id) or not valid_id(config.family):
            raise ConfigError("devices", f"bad device id or family in {config.device_id!r}")
        out.append(config)
    ids = [c.device_id for c in out]
    if len(set(ids)) != len(ids):
        raise ConfigError("devices", "device ids must be unique")
    return tuple(out)


_FIELDS = {f.name for f in dataclasses.fields(AgentConfig)}


def _check_readable(path: Path, *, setting: str) -> None:
    """A TLS file paho will read at connect: refused now, with the setting named, rather
    than as a connect error in every reconnect."""
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as err:
        raise ConfigError(setting, f"cannot read {path}: {err.strerror}") from err


def _read_secret(path: Path, *, setting: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(setting, f"cannot read {path}: {err.strerror}") from err
    if not value:
        raise ConfigError(setting, f"{path} is empty")
    return value


MODULE_ENV_PREFIX = "STOREFLEET_"


def module_env(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Module settings from the environment: ``STOREFLEET_<MODULE>__<FIELD>[__<FIELD>]``
    (``STOREFLEET_TILL__CLOUD_API_TOKEN``, ``STOREFLEET_TILL__STORE__NAME``); a value is
    JSON when it parses as JSON (numbers, lists, ``true``), else the string itself."""
    out: dict[str, dict[str, Any]] = {}
    for key, raw in environ.items():
        if not key.startswith(MODULE_ENV_PREFIX) or "__" not in key:
            continue
        module, *path = key.removeprefix(MODULE_ENV_PREFIX).lower().split("__")
        if not module or not path or not all(path):
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out.setdefault(module, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "conflicts with another variable")
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None = None, /, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> AgentConfig:
    """Settings from a TOML file (optional), then the modules' environment variables
    (``environ``, e.g. ``os.environ``; see ``module_env``), then ``overrides`` (``None``
    values ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError("config", f"cannot read {path}: {err}") from err
        section = doc.pop("agent", None)
        if section is None:  # a file without [agent]: the kernel's fields at the top
            section = {k: v for k, v in doc.items() if k in _FIELDS}
            doc = {k: v for k, v in doc.items() if k not in _FIELDS}
        if not isinstance(section, dict):
            raise ConfigError("config", "[agent] must be a table")
        for name, table in doc.items():  # every other table is a module's section
            if not isinstance(table, dict):
                raise ConfigError(name, "unknown setting (module settings are [tables])")
        values.update(section)
        values["modules"] = {**doc, **values.get("modules", {})}
    if environ is not None and (from_env := module_env(environ)):
        values["modules"] = _merge(dict(values.get("modules", {})), from_env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ConfigError(unknown[0], "unknown setting")
    for name in ("store_id", "data_dir"):
        if name not in values:
            raise ConfigError(name, "required")
    try:
        return AgentConfig(**values)
    except TypeError as err:
        raise ConfigError("config", str(err)) from err
