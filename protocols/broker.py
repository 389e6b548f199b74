"""Where an MQTT broker listens and how to log in: one address type for the agent, the
cloud, the simulators and the tests (decision 0032).

    addr = BrokerAddress.parse("mqtts://S001@cloud.example.net:8883", setting="cloud_url")
    addr = addr.with_tls(ca_file=ca, cert_file=crt, key_file=key, prefix="cloud")
    client = aiomqtt.Client(**addr.client_options(), identifier="S001")

A clustered broker is one address with several hosts, as MongoDB and Kafka URLs list
them: ``mqtts://S001@n1:8883,n2:8883,n3`` (each host's port defaults by the scheme; one
user, password and TLS files for all). A client that fails over connects to
``next(rotation)`` each time (``rotation(seed=client_id)``: round robin through the
hosts in an order drawn once per client, decision 0062); ``client_options`` of a
several-host address is its first host's, for clients that do not fail over.

``mqtt://`` is plain TCP (port 1883 by default), ``mqtts://`` is TLS (8883): the broker
is checked against ``ca_file`` (the system's CAs when none is given), and a client
certificate and key (mTLS) identify the client when given. A user name and password
(from the URL or set apart, e.g. read from a file) may come with either.

Parsing and checking are pure, like the rest of ``protocols``: nothing here reads a
file or opens a socket. ``client_options`` imports aiomqtt only when it is called, to
build its ``TLSParameters`` (a dataclass of paths; paho reads the files when it
connects); the callers, which already do I/O, check that the files can be read
(``tls_files`` names them with their settings).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from protocols.errors import ProtocolError

# The IANA ports for MQTT and MQTT over TLS.
MQTT_PORT = 1883
MQTTS_PORT = 8883
# "tcp" is what paho's examples and older configurations write for plain MQTT.
_PLAIN_SCHEMES = ("mqtt", "tcp")
_TLS_SCHEMES = ("mqtts",)


class BrokerAddressError(ProtocolError):
    """A broker address or TLS setting that cannot work; ``setting`` names it."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting
        self.detail = detail
        self.reason = "bad_broker_address"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """An MQTT broker and this client's credentials. ``password`` is left out of repr."""

    host: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's trusted CAs
    cert_file: Path | None = None  # client certificate (mTLS), with key_file
    key_file: Path | None = None
    # The cluster's other nodes, (host, port) after ``host``/``port`` (decision 0062).
    more_hosts: tuple[tuple[str, int], ...] = ()

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]:
        """Every (host, port), the first one first."""
        return ((self.host, self.port), *self.more_hosts)

    @property
    def url(self) -> str:
        """``scheme://host:port[,host:port...]``, without credentials: safe to log."""
        return f"{self.scheme}://" + ",".join(_host_port(h, p) for h, p in self.hosts)

    @property
    def mutual_tls(self) -> bool:
        return self.cert_file is not None

    @classmethod
    def parse(cls, url: str, *, setting: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port][,host[:port]...]`` or ``mqtts://...``;
        errors name ``setting``."""
        try:
            parts = urlsplit(url)
        except ValueError as err:  # an unbalanced [ of an IPv6 host
            raise BrokerAddressError(setting, f"{_redact(url)!r}: {err}") from err
        scheme = parts.scheme.lower()
        if scheme not in (*_PLAIN_SCHEMES, *_TLS_SCHEMES):
            raise BrokerAddressError(
                setting, f"{_redact(url)!r} is not an mqtt://host:port or mqtts://host:port URL")
        tls = scheme in _TLS_SCHEMES
        host_list = parts.netloc.rpartition("@")[2]
        if not host_list:
            raise BrokerAddressError(setting, f"{_redact(url)!r} has no host")
        entries = host_list.split(",")
        hosts: list[tuple[str, int]] = []
        for number, entry in enumerate(entries, start=1):
            # Which one, when there are several: "host 2 ('n2:x')".
            where = f" (host {number}, {entry!r})" if len(entries) > 1 else ""
            host = _parse_host(entry, tls=tls, setting=setting,
                               problem=f"{_redact(url)!r}{where}")
            if host in hosts:
                raise BrokerAddressError(setting, f"{_redact(url)!r} lists "
                                                  f"{_host_port(*host)} twice")
            hosts.append(host)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BrokerAddressError(setting, f"{_redact(url)!r}: an MQTT URL has no path")
        return cls(
            host=hosts[0][0],
            port=hosts[0][1],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            more_hosts=tuple(hosts[1:]),
        )

    def each_host(self) -> list[BrokerAddress]:
        """One address per host, with this one's credentials and TLS files."""
        return [dataclasses.replace(self, host=host, port=port, more_hosts=())
                for host, port in self.hosts]

    def rotation(self, *, seed: str | None = None) -> HostRotation:
        """The hosts to connect to, one per ``next()``; see ``HostRotation``."""
        return HostRotation(self, rng=random.Random(seed))

    def with_credentials(self, *, username: str | None, password: str | None) -> BrokerAddress:
        """Credentials set apart from the URL win over those in it (None keeps them)."""
        return dataclasses.replace(
            self,
            username=self.username if username is None else username,
            password=self.password if password is None else password,
        )

    def with_tls(self, *, ca_file: Path | str | None = None, cert_file: Path | str | None = None,
                 key_file: Path | str | None = None, prefix: str) -> BrokerAddress:
        """This address with TLS files; errors name ``<prefix>_ca``, ``<prefix>_cert``,
        ``<prefix>_key`` (the settings they came from). A file needs ``mqtts://``, a
        certificate needs its key and the other way round."""
        files = {"ca": ca_file, "cert": cert_file, "key": key_file}
        given = {name: Path(value) for name, value in files.items() if value is not None}
        if given and not self.tls:
            first = next(iter(given))
            raise BrokerAddressError(
                f"{prefix}_{first}",
                f"TLS files need an mqtts:// broker address, not {self.url}")
        if ("cert" in given) != ("key" in given):
            missing = "key" if "cert" in given else "cert"
            raise BrokerAddressError(
                f"{prefix}_{missing}",
                "a client certificate and its private key come together (mTLS)")
        return dataclasses.replace(self, ca_file=given.get("ca"),
                                   cert_file=given.get("cert"), key_file=given.get("key"))

    def tls_files(self, *, prefix: str) -> list[tuple[str, Path]]:
        """(setting, path) of each TLS file, for the caller to check it can be read."""
        files = (("ca", self.ca_file), ("cert", self.cert_file), ("key", self.key_file))
        return [(f"{prefix}_{name}", path) for name, path in files if path is not None]

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client``: hostname, port, username, password
        and, for ``mqtts://``, ``tls_params`` (the broker's name is checked against its
        certificate; paho's default). With several hosts, the first one's: a client that
        fails over takes ``next(rotation)``'s options on each connect instead."""
        options: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "tls_params": None,
        }
        if self.tls:
            # Imported here: the protocols package stays importable without the MQTT
            # client; TLSParameters only holds the paths (paho reads them at connect).
            import aiomqtt

            options["tls_params"] = aiomqtt.TLSParameters(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
            )
        return options


class HostRotation(Iterator[BrokerAddress]):
    """Which host a client connects to next: ``next(rotation)`` on every connect, the
    one-host address to hand to the client (decision 0062).

    Round robin through the hosts in an order shuffled once, by ``rng``: clients spread
    over the nodes, and the clients of a node that dies spread over the survivors
    instead of all moving to the node listed after it. ``BrokerAddress.rotation(seed=)``
    seeds it with the client id: a client's order is the same in every run (an operator
    can say where a store connects first; a test can choose), while the ids of a chain's
    stores spread like random draws. One host: that host, every time."""

    def __init__(self, address: BrokerAddress, *, rng: random.Random) -> None:
        order = address.each_host()
        rng.shuffle(order)
        self._order = order
        self._next = 0
        self.current: BrokerAddress | None = None  # the last one handed out

    @property
    def order(self) -> list[BrokerAddress]:
        return list(self._order)

    def __next__(self) -> BrokerAddress:
        self.current = self._order[self._next]
        self._next = (self._next + 1) % len(self._order)
        return self.current


def _parse_host(entry: str, *, tls: bool, setting: str, problem: str) -> tuple[str, int]:
    """One ``host[:port]`` of a host list (``problem`` says where it is in errors)."""
    if not entry:
        raise BrokerAddressError(setting, f"{problem} has an empty host")
    try:
        parts: SplitResult = urlsplit(f"//{entry}")
        hostname = parts.hostname
    except ValueError as err:
        raise BrokerAddressError(setting, f"{problem}: {err}") from err
    if not hostname:
        raise BrokerAddressError(setting, f"{problem} has no host")
    try:
        port = parts.port or (MQTTS_PORT if tls else MQTT_PORT)
    except ValueError as err:
        raise BrokerAddressError(setting, f"{problem} has a bad port") from err
    return hostname, port


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: str) -> str:
    """``url`` with the password (if any) replaced, for error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: keep only the scheme
        return url.partition("://")[0] + "://..."
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
