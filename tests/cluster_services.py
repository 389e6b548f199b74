"""A three-node RabbitMQ cluster on loopback, for the clustered-broker tests (decision 0053).

Each node runs ``deploy/cluster/rabbitmq.conf`` with its listener, node-list and limit
lines rewritten (``shipped_broker_conf``: a shipped line the test no longer covers fails
loudly), the MQTT plugin enabled, as ``sf<i>@localhost``. The cluster is private to its
``workdir``: its own Erlang cookie (``HOME``), its own epmd on a free port
(``ERL_EPMD_PORT``), its own ``rabbitmq-env.conf`` and plugin list, so it neither sees
nor disturbs a system-wide RabbitMQ or another test's cluster.

``kill(i)`` is ``kill -9`` of node i's whole process group: the node gets no chance to
hand anything over, as in a crash. ``start_node(i)`` brings it back with its data.

Run by hand: ``python -m tests.cluster_services /tmp/sf-cluster`` starts a cluster and
prints its MQTT URLs until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._services import wait_port
from tests.services import shipped_broker_conf, unavailable

SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "cluster" / "rabbitmq.conf"
# Test clients log in as RabbitMQ's default user, which a fresh cluster creates and
# allows from loopback only.
USER, PASSWORD = "guest", "guest"
# One scheduler per node and no busy-waiting: three nodes share a two-core machine with
# the rest of the suite (a node's default is one spinning scheduler per core). Erlang
# distribution listens on loopback only.
_ERL_ARGS = ("+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"
             " -kernel inet_dist_use_interface {127,0,0,1}")
# Ports below Linux's ephemeral range (32768-60999): a node takes 10-30 s to open its
# listeners, long enough for an outgoing connection to be handed a port that
# ``free_port`` chose in that range (seen: a node died on "could not start listener").
_QUIET_PORTS = (20000, 32000)


_GIVEN: set[int] = set()  # ports handed out in this process: never twice


def quiet_port() -> int:
    """A free loopback port outside the ephemeral range, not handed out before in this
    process (a cluster's nine ports are chosen before any node binds one; a CI run saw
    two nodes given the same distribution port, and a later cluster may follow one
    whose node epmd still lists)."""
    while True:
        port = random.randrange(*_QUIET_PORTS)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port


def find_rabbitmq() -> Path | None:
    """The directory of RabbitMQ's own scripts (not Debian's wrapper, which su's to the
    rabbitmq user and uses /var/lib/rabbitmq)."""
    for candidate in (Path("/usr/lib/rabbitmq/bin"), Path("/usr/local/lib/rabbitmq/sbin")):
        if (candidate / "rabbitmq-server").exists():
            return candidate
    found = shutil.which("rabbitmq-server")
    return Path(found).resolve().parent if found else None


@dataclass
class RabbitNode:
    index: int
    mqtt_port: int = field(default_factory=quiet_port)
    amqp_port: int = field(default_factory=quiet_port)
    dist_port: int = field(default_factory=quiet_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"sf{self.index}@localhost"

    @property
    def url(self) -> str:
        return f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{self.mqtt_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


MEND_AFTER_S = 60.0  # then a cluster that has not formed is helped along (``_mend``)


@dataclass
class RabbitCluster:
    workdir: Path
    size: int = 3
    epmd_port: int = field(default_factory=quiet_port)
    nodes: list[RabbitNode] = field(default_factory=list)
    bindir: Path | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [RabbitNode(i) for i in range(1, self.size + 1)]

    # -- environment -------------------------------------------------------------------

    def _env(self, node: RabbitNode) -> dict[str, str]:
        d = self.workdir / node.name.split("@")[0]
        return {
            **os.environ,
            "HOME": str(self.workdir),  # the Erlang cookie lives in $HOME
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),  # none
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": _ERL_ARGS,
        }

    def _config(self, node: RabbitNode) -> str:
        subs = {
            r"^listeners\.tcp\.default = .*$":
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}",
            r"^mqtt\.listeners\.tcp\.default = .*$":
                f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}",
            # The suite's temp disk is small and shared; 2 GB would block publishers.
            r"^disk_free_limit\.absolute = .*$": "disk_free_limit.absolute = 50MB",
            r"^log\.console\.level = .*$": "log.console.level = warning",
        }
        for n in self.nodes:
            subs[rf"^cluster_formation\.classic_config\.nodes\.{n.index} = .*$"] = (
                f"cluster_formation.classic_config.nodes.{n.index} = {n.name}")
        return shipped_broker_conf(SHIPPED, subs)

    def _prepare(self) -> None:
        self.bindir = find_rabbitmq()
        if self.bindir is None or shutil.which("erl") is None:
            unavailable("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cookie = self.workdir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(os.urandom(16).hex())
            cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (self.workdir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        for node in self.nodes:
            d = self.workdir / node.name.split("@")[0]
            d.mkdir(exist_ok=True)
            (d / "rabbitmq.conf").write_text(self._config(node))

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, timeout_s: float = 240.0) -> None:
        """One node after the other, each serving MQTT before the next starts; then until
        the cluster lists every node as running and every node is a member of the MQTT
        plugin's client-id tracker.

        One after the other because RabbitMQ 3.10's MQTT client-id tracker (its own Raft
        cluster, ``mqtt_node``) refuses a second join while one is in progress
        (``cluster_change_not_permitted``) and does not retry it: nodes booted together
        formed a tracker of two out of three, and after the loss of one of those two no
        MQTT client could connect anywhere ("client ID registration timed out")."""
        self._prepare()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            self._spawn(node)
            self._wait_mqtt([node], deadline)
        mend_at = time.monotonic() + MEND_AFTER_S
        mended: set[str] = set()
        while True:
            running, tracker = self.running_nodes(), self.tracker_members()
            if len(running) == len(tracker) == self.size:
                return
            if time.monotonic() > deadline:
                self.stop()
                unavailable(f"the cluster did not form within {timeout_s:.0f} s: running "
                            f"{running}, in the MQTT client-id tracker {tracker}")
            if time.monotonic() > mend_at:
                self._mend(running, tracker, mended)
            time.sleep(1)

    def _mend(self, running: list[str], tracker: list[str], mended: set[str]) -> None:
        """Once per node, for a cluster that has not formed ``MEND_AFTER_S`` after its
        last node served MQTT: a node that booted alone (peer discovery timed out on a
        loaded box) joins the first node; a node missing from the MQTT client-id tracker
        restarts its app, which joins the tracker again. Seen once in CI (formation had
        not completed after 240 s); the usual formation takes ~30 s."""
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if node.name in mended or not node.alive or not running:
                continue
            steps: tuple[tuple[str, ...], ...]
            if node.name not in running:
                steps = (("stop_app",), ("join_cluster", first.name), ("start_app",))
            elif node.name not in tracker:
                steps = (("stop_app",), ("start_app",))
            else:
                continue
            mended.add(node.name)
            print(f"cluster: mending {node.name} ({' / '.join(s[0] for s in steps)}); "
                  f"running {running}, tracker {tracker}", file=sys.stderr, flush=True)
            try:
                for step in steps[:-1]:
                    self.ctl(*step, via=node.index)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                print(f"cluster: mending {node.name}: {err}", file=sys.stderr, flush=True)
            finally:  # the app starts again whatever the steps before it did
                try:
                    self.ctl(*steps[-1], via=node.index)
                except (RuntimeError, subprocess.TimeoutExpired) as err:
                    print(f"cluster: mending {node.name}: {err}", file=sys.stderr,
                          flush=True)

    def _spawn(self, node: RabbitNode) -> None:
        assert self.bindir is not None
        with open(self.workdir / f"{node.name.split('@')[0]}.log", "ab") as log:
            # Own process group: kill() takes the node's shell and Erlang VM together.
            node.proc = subprocess.Popen([str(self.bindir / "rabbitmq-server")],
                                         env=self._env(node), stdout=log, stderr=log,
                                         start_new_session=True)

    def _wait_mqtt(self, nodes: list[RabbitNode], deadline: float) -> None:
        """Until every node in ``nodes`` accepts MQTT connections; a node that died or
        a deadline passed stops the cluster (the node's log tail in the message)."""
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                if wait_port(node.mqtt_port, timeout_s=0.5):
                    waiting.remove(node)
                elif not node.alive or time.monotonic() > deadline:
                    tail = (self.workdir / f"{node.name.split('@')[0]}.log").read_text(
                        errors="replace")[-1500:]
                    self.stop()
                    unavailable(f"RabbitMQ node {node.name} did not serve MQTT:\n{tail}")

    def start_node(self, index: int, *, timeout_s: float = 120.0) -> None:
        node = self.node(index)
        self._spawn(node)
        self._wait_mqtt([node], time.monotonic() + timeout_s)

    def kill(self, index: int) -> None:
        """``kill -9`` node ``index`` (1-based) and everything in its process group."""
        node = self.node(index)
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
        node.proc = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait(10)
            node.proc = None
        # The first node started an epmd daemon on our private port; it outlives the nodes.
        epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob(
            "erts-*/bin/epmd"))), None)
        if epmd is not None:
            subprocess.run([str(epmd), "-port", str(self.epmd_port), "-kill"],
                           capture_output=True, timeout=10, check=False)

    # -- inspection ----------------------------------------------------------------------

    def node(self, index: int) -> RabbitNode:
        return self.nodes[index - 1]

    def ctl(self, *args: str, via: int | None = None, timeout_s: float = 60.0) -> str:
        """``rabbitmqctl`` against a live node (the first alive one unless ``via``)."""
        assert self.bindir is not None
        node = self.node(via) if via else next(n for n in self.nodes if n.alive)
        res = subprocess.run([str(self.bindir / "rabbitmqctl"), "-n", node.name, *args],
                             env=self._env(node), capture_output=True, timeout=timeout_s,
                             check=False)
        if res.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {res.stderr.decode()[-500:]}")
        return res.stdout.decode()

    def running_nodes(self) -> list[str]:
        try:
            status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        except (RuntimeError, ValueError, StopIteration):
            return []
        return list(status.get("running_nodes", []))

    def tracker_members(self) -> list[str]:
        """The nodes in the MQTT plugin's client-id tracker (``mqtt_node``, a Raft
        cluster): an MQTT client connects only while a majority of them is up."""
        node = next((n for n in self.nodes if n.alive), None)
        if node is None:
            return []
        try:
            out = self.ctl("eval", f"ra:members({{mqtt_node, '{node.name}'}}).")
        except RuntimeError:
            return []
        return sorted(set(re.findall(r"\{mqtt_node,'?([\w.-]+@[\w.-]+)'?\}", out)))

    def queue_members(self, queue: str) -> dict[str, object]:
        """A quorum queue's leader and members, as ``rabbitmqctl list_queues`` sees them."""
        rows = json.loads(self.ctl("list_queues", "name", "type", "leader", "members",
                                   "messages", "--formatter", "json"))
        return next((r for r in rows if r["name"] == queue), {})


def main() -> None:
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sf-rabbit-cluster")
    cluster = RabbitCluster(workdir)
    started = time.monotonic()
    try:
        cluster.start()
        print(f"cluster of {cluster.size} up in {time.monotonic() - started:.1f} s:", flush=True)
        for node in cluster.nodes:
            print(f"  {node.name}  {node.url}  (AMQP {node.amqp_port})", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
