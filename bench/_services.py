"""What the fleet benches start and read: Mosquitto brokers on free loopback ports, the
cloud as its own process (``storefleet cloud serve --ingest``), a process's peak RSS, a
metric from a Prometheus text page and a throwaway PostgreSQL server. One place for
``bench/rollout.py``, ``bench/pricebook.py``, ``bench/content.py`` and
``bench/ingest.py``; the tests' fixtures import ``free_port``, ``wait_port`` and
``Postgres`` from here too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Tokens of this run only (the cloud is started by the bench and stopped at its end).
ADMIN_TOKEN = "bench-admin-" + os.urandom(12).hex()
DEVICE_TOKEN = "bench-device-" + os.urandom(12).hex()


class BenchError(Exception):
    """The bench could not run (a missing broker, a cloud that did not start)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)
    if found is None:
        raise BenchError("mosquitto is not installed (apt-get install mosquitto)")
    return found


@dataclass(frozen=True, slots=True)
class Broker:
    url: str
    pid: int


@contextmanager
def mosquittos(workdirs: Sequence[Path]) -> Iterator[list[Broker]]:
    """A Mosquitto broker per directory, each on a free loopback port, started together
    (a hundred stores' local buses: one by one they would wait on each other)."""
    binary = find_mosquitto()
    procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    try:
        for workdir in workdirs:
            workdir.mkdir(parents=True)
            port = free_port()
            conf = workdir / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                            # a hundred boxes' messages in flight at once
                            "max_queued_messages 0\nmax_inflight_messages 0\n"
                            # as root Mosquitto drops to its own user, which cannot read
                            # workdir
                            + ("user root\n" if os.geteuid() == 0 else ""))
            with open(workdir / "mosquitto.log", "ab") as log:
                procs.append((subprocess.Popen([binary, "-c", str(conf)], stdout=log,
                                               stderr=log), port, workdir))
        for _, port, workdir in procs:
            if not wait_port(port):
                raise BenchError(f"mosquitto did not listen on {port} (see {workdir})")
        yield [Broker(f"mqtt://127.0.0.1:{port}", proc.pid) for proc, port, _ in procs]
    finally:
        for proc, _, _ in procs:
            proc.kill()
        for proc, _, _ in procs:
            proc.wait(10)


@contextmanager
def mosquitto(workdir: Path) -> Iterator[str]:
    """A Mosquitto broker on a free loopback port, for this run; yields its URL."""
    with mosquittos([workdir]) as brokers:
        yield brokers[0].url


@contextmanager
def cloud(workdir: Path, *, broker: str) -> Iterator[tuple[str, int]]:
    """``storefleet cloud serve --ingest`` in its own process; yields (URL, pid)."""
    port = free_port()
    env = {**os.environ,
           "STOREFLEET_API_TOKENS": f"{ADMIN_TOKEN}:hq-admin,{DEVICE_TOKEN}:device",
           "STOREFLEET_REQUIRE_TOKEN_SCOPE": "0",  # one device token for every box
           "STOREFLEET_ARTIFACT_DIR": str(workdir / "blobs"),
           "STOREFLEET_ROLLOUT_INTERVAL_S": "0.5",  # the next wave within half a second
           "STOREFLEET_SCHEDULER_INTERVAL_S": "0"}
    argv = [sys.executable, "-m", "storefleet", "cloud", "serve", "--ingest", "--dev",
            "--host", "127.0.0.1", "--port", str(port),
            "--db", f"sqlite:///{workdir / 'cloud.db'}", "--mqtt", broker,
            "--log-level", "warning"]
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "cloud.log", "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60  # migrations and imports, on a loaded box
        while not wait_port(port, timeout_s=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                # the run's directory goes with it: say here what the cloud said
                said = (workdir / "cloud.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"the cloud did not listen on {port} (exit status "
                                 f"{proc.poll()}); its log ends:\n{said}")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float = 30.0) -> None:
    """SIGTERM (a clean stop: the agent and the cloud finish what they hold), then
    SIGKILL after ``grace_s``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError as err:
        raise BenchError(f"cannot read the peak RSS of {pid} (Linux /proc): {err}") from err
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    if match is None:
        raise BenchError(f"no VmHWM in /proc/{pid}/status")
    return round(int(match.group(1)) / 1024, 1)


def metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def find_pg_bin() -> Path | None:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "initdb").exists():
            return base
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir, run as the postgres user when root.

    ``fsync``: off for tests (a lost cluster is recreated); on where a benchmark measures
    durable commits. ``start`` raises ``BenchError`` when it cannot start."""

    workdir: Path
    port: int = field(default_factory=free_port)
    bindir: Path | None = None
    fsync: bool = False

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, timeout=120, check=False)

    def start(self) -> None:
        self.bindir = find_pg_bin()
        if self.bindir is None:
            raise BenchError("PostgreSQL is not installed (apt-get install postgresql)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to 'postgres',
            # which must be able to reach the directory.
            for parent in (self.workdir.parent, self.workdir):
                parent.chmod(0o755)
            shutil.chown(self.workdir, "postgres", "postgres")
        res = self._run([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                         "-A", "trust", "-E", "UTF8"])
        if res.returncode != 0:
            raise BenchError(f"initdb failed: {res.stderr.decode(errors='replace')[-500:]}")
        opts = (f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
                f" -c fsync={'on' if self.fsync else 'off'}")
        res = self._run([str(self.bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                         "-l", str(self.workdir / "pg.log"), "-w", "start"])
        if res.returncode != 0 or not wait_port(self.port):
            raise BenchError(
                f"postgres did not start: {res.stderr.decode(errors='replace')[-500:]}")

    def stop(self) -> None:
        if self.bindir is not None:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "data"),
                       "-m", "immediate", "stop"])

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
