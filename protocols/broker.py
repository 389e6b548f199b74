"""Where an MQTT broker listens and how to log in: one address type for the agent, the
cloud, the simulators and the tests (decision 0032).

    addr = BrokerAddress.parse("mqtts://S001@cloud.example.net:8883", setting="cloud_url")
    addr = addr.with_tls(ca_file=ca, cert_file=crt, key_file=key, prefix="cloud")
    client = aiomqtt.Client(**addr.client_options(), identifier="S001")

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    @property
    def url(self) -> str:
        """``scheme://host:port``, without credentials: safe to log."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def mutual_tls(self) -> bool:
        return self.cert_file is not None

    @classmethod
    def parse(cls, url: str, *, setting: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``; errors name
        ``setting``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in (*_PLAIN_SCHEMES, *_TLS_SCHEMES):
            raise BrokerAddressError(
                setting, f"{_redact(url)!r} is not an mqtt://host:port or mqtts://host:port URL")
        if not parts.hostname:
            raise BrokerAddressError(setting, f"{_redact(url)!r} has no host")
        tls = scheme in _TLS_SCHEMES
        try:
            port = parts.port or (MQTTS_PORT if tls else MQTT_PORT)
        except ValueError as err:
            raise BrokerAddressError(setting, f"{_redact(url)!r} has a bad port") from err
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BrokerAddressError(setting, f"{_redact(url)!r}: an MQTT URL has no path")
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

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
        certificate; paho's default)."""
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


def _redact(url: str) -> str:
    """``url`` with the password (if any) replaced, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
