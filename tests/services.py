"""Real services for tests: a Mosquitto broker and a PostgreSQL server on loopback.

Both are started from the machine's own binaries. When a binary is missing or the
service cannot start, tests are skipped, unless ``STOREFLEET_REQUIRE_SERVICES=1``
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench import _services
from bench._services import free_port, wait_port  # one copy, shared with the benches

REQUIRE = os.environ.get("STOREFLEET_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


@dataclass
class Mosquitto:
    """A Mosquitto broker on 127.0.0.1 with persistence, restartable on the same port.

    ``shipped_conf``: run a shipped configuration (``shipped_broker_conf``) instead of
    the test one; ``tls_port`` is then its mTLS listener, ``pki`` its certificates."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None
    shipped_conf: str | None = None
    tls_port: int | None = None
    pki: Path | None = None

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None, "this broker has no TLS listener"
        return f"mqtts://{self.host}:{self.tls_port}"

    def config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        if self.shipped_conf is not None:
            conf.write_text(self.shipped_conf + "\nlog_dest stderr\nconnection_messages true\n"
                            + ("user root\n" if os.geteuid() == 0 else ""))
            return conf
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            # Offline persistent sessions (cloud ingest, the agent's local-bus
            # session) must be able to queue a whole outage's worth of events.
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n"  # connects/disconnects: what liveness tests need to debug
            "connection_messages true\n"
            "log_timestamp_format %H:%M:%S\n"
            # As root Mosquitto drops to the 'mosquitto' user, which cannot write
            # into pytest's private temp dirs; keep root for these test brokers.
            + ("user root\n" if os.geteuid() == 0 else "")
            + self.extra_conf
        )
        return conf

    def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            unavailable("mosquitto is not installed (apt-get install mosquitto)")
        assert binary is not None
        conf = self.config()
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        if not wait_port(self.port):
            self.proc.kill()
            unavailable(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Graceful stop: Mosquitto writes its persistence file on SIGTERM."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def shipped_broker_conf(shipped: Path, substitutions: dict[str, str]) -> str:
    """A shipped Mosquitto configuration with a test's paths and ports: each regular
    expression in ``substitutions`` (a whole line) must match exactly once, so a change
    to the shipped file that a test no longer covers fails loudly."""
    conf = shipped.read_text()
    for pattern, value in substitutions.items():
        conf, count = re.subn(pattern, value, conf, flags=re.M)
        assert count == 1, f"{shipped.name} no longer has one {pattern!r}"
    return conf


def dynsec_plugin() -> Path | None:
    """Mosquitto's dynamic security plugin, wherever the distribution put it."""
    for pattern in ("usr/lib/*/", "usr/lib/", "usr/local/lib/", "usr/local/lib/*/"):
        found = sorted(Path("/").glob(pattern + "mosquitto_dynamic_security.so"))
        if found:
            return found[0]
    return None


def shipped_cloud_broker(workdir: Path, *, admin: tuple[str, str]) -> Mosquitto:
    """The cloud broker as deploy/mosquitto/ ships it (dynamic security plugin, password
    listener, mTLS listener), on free loopback ports, with certificates made by
    ``cloud.pki`` in ``workdir/pki`` (CA, server for 127.0.0.1 and localhost, stores
    S001 and S002, an empty CRL ``crl.pem``; the pid file is ``workdir/mosquitto.pid``)
    and the plugin initialised by ``mosquitto_ctrl dynsec init``: only
    ``admin`` exists. Not started."""
    from cloud import pki

    plugin = dynsec_plugin()
    tool = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    if plugin is None or not Path(tool).exists():
        unavailable("mosquitto's dynamic security plugin or mosquitto_ctrl is not installed")
    assert plugin is not None
    certs = workdir / "pki"
    pki.init_ca(certs)
    pki.issue_server(certs, ["127.0.0.1", "localhost"])
    for store in ("S001", "S002"):
        pki.issue_store(certs, store)
    pki.write_crl(certs, certs / "crl.pem", [])  # empty: nothing revoked yet
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    dynsec = state / "dynamic-security.json"
    subprocess.run([tool, "dynsec", "init", str(dynsec), *admin], check=True,
                   capture_output=True)
    port, tls_port = free_port(), free_port()
    shipped = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
    conf = shipped_broker_conf(shipped, {
        r"^persistence_location .*$": f"persistence_location {state}/",
        r"^plugin .*$": f"plugin {plugin}",
        r"^plugin_opt_config_file .*$": f"plugin_opt_config_file {dynsec}",
        r"^listener 1883 .*$": f"listener {port} 127.0.0.1",
        r"^listener 8883$": f"listener {tls_port} 127.0.0.1",
        r"^cafile .*$": f"cafile {certs / 'ca.crt'}",
        r"^certfile .*$": f"certfile {certs / 'server.crt'}",
        r"^keyfile .*$": f"keyfile {certs / 'server.key'}",
        r"^crlfile .*$": f"crlfile {certs / 'crl.pem'}",
        r"^pid_file .*$": f"pid_file {workdir / 'mosquitto.pid'}",
    })
    return Mosquitto(workdir=workdir, port=port, shipped_conf=conf, tls_port=tls_port,
                     pki=certs)


class Postgres(_services.Postgres):
    """``bench._services.Postgres`` (one copy, shared with the benches), whose failure
    to start skips the test, or fails it under ``STOREFLEET_REQUIRE_SERVICES=1``."""

    def start(self) -> None:
        try:
            super().start()
        except _services.BenchError as err:
            unavailable(str(err))


@dataclass
class Prometheus:
    """A Prometheus server on loopback scraping the given targets every second."""

    workdir: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            unavailable("prometheus is not installed (apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "prometheus.yml"
        targets = ", ".join(f'"{t}"' for t in self.targets)
        conf.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: storefleet\n    static_configs:\n"
            f"      - targets: [{targets}]\n"
        )
        with open(self.workdir / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={conf}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=log,
            )
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/-/ready`` answers 200: the port opens before the TSDB is loaded, and
        queries meanwhile get 503 (a loaded CI box takes seconds)."""
        if not wait_port(self.port, timeout_s=20):
            self.stop()
            unavailable("prometheus did not start")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:  # 503 (HTTPError), refused, a timeout: not yet
                pass
            time.sleep(0.2)
        self.stop()
        unavailable(f"prometheus was not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
