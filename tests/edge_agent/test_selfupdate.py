"""Agent self-update under a real process supervisor (decision 0041).

supervisord (systemd is not PID 1 in these containers) runs the shipped unit's
``ExecStart`` (the launcher, the same paths under this test's root) with its restart
policy; the agent it restarts is a real process on real Mosquitto, talking to the real
cloud (uvicorn, in-process ingest and its rollout hook, ``tests/integration/
rollout_fleet.py``). Releases are wheels of this repository's working tree (built
once per session, offline), the version rewritten: 0.2.0 and 0.4.0 good, 0.3.0 broken
(its ``edge_agent.__main__`` raises at import: the agent cannot start).

- a good release is switched to, the agent restarted into it, ``succeeded`` reaches the
  cloud, the rollout completes; then a broken one is switched back by the launcher
  on its own, well inside the deadline, 0.2.0 runs again, ``failed`` (rolled back)
  reaches the cloud and a new rollout of it skips the store; then ``kill -9`` of the
  agent while it unpacks 0.4.0: the supervisor restarts it and ``current`` is a
  complete release (0.2.0 or 0.4.0), the agent runs, the rollout is answered;
- the agent is busy (an install waits) while a device is: a customer mid-vend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.installers import Offer
from edge_agent.installers.agent import AgentInstaller
from edge_agent.selfupdate.releases import Releases, release_name
from tests.cloud.conftest import ADMIN, DEVICE, auth
from tests.edge_agent.helpers import new_store_id, wait_until
from tests.edge_agent.wheels import build_wheel
from tests.integration.rollout_fleet import Fleet, fleet, until_true
from tests.services import Mosquitto, free_port, unavailable

pytestmark = pytest.mark.mosquitto

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "storefleet-edge.service"
SHIPPED_LAUNCHER = "/opt/storefleet/.venv/bin/storefleet-edge-launcher"
SHIPPED_ROOT = "/opt/storefleet"
SHIPPED_CONFIG = "/etc/storefleet/edge.toml"
BASE = "0.1.0"  # the runtime's own agent (this checkout)


# ---- release wheels ------------------------------------------------------------------

@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dest = tmp_path_factory.mktemp("wheels")
    broken = b'raise ImportError("release 0.3.0 is broken on purpose")\n'
    return {"0.2.0": build_wheel(dest, "0.2.0"),
            "0.3.0": build_wheel(dest, "0.3.0", patch={"edge_agent/__main__.py": broken}),
            "0.4.0": build_wheel(dest, "0.4.0")}


# ---- the box: supervisord running the shipped unit's command -------------------------

def unit_service(text: str) -> dict[str, str]:
    section, out = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


@dataclass
class Box:
    root: Path
    store_id: str
    supervisord: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @property
    def releases(self) -> Releases:
        return Releases(self.root)

    def agent_pid(self) -> int | None:
        pid = self.supervisord.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else None

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the running agent's /metrics (0 when absent)."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextlib.contextmanager
def box(tmp_path: Path, *, cloud: Mosquitto, local: Mosquitto, api: str, key: str):  # type: ignore[no-untyped-def]
    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.exists():
        unavailable("supervisord is not installed (pip install -e '.[test]')")
    root, work = tmp_path / "opt-storefleet", tmp_path / "var-lib-storefleet"
    root.mkdir()
    work.mkdir()
    store_id, metrics_port = new_store_id(), free_port()
    conf = tmp_path / "edge.toml"
    conf.write_text(f"""
[agent]
store_id = "{store_id}"
data_dir = "{work}"
cloud_url = "{cloud.url}"
local_bus = "{local.url}"
metrics_port = {metrics_port}
keepalive_s = 2
reconnect_min_s = 0.1
reconnect_max_s = 0.5
birth_debounce_s = 0.2
shutdown_drain_s = 1.0

[updates]
cloud_api = "{api}"
cloud_api_token = "{DEVICE}"
trusted_keys = ["{key}"]
""")
    service = unit_service(UNIT.read_text())
    # The console script is `python -m edge_agent.selfupdate.launcher` (pyproject).
    command = (service["ExecStart"]
               .replace(SHIPPED_LAUNCHER, f"{sys.executable} -m edge_agent.selfupdate.launcher")
               .replace(SHIPPED_ROOT, str(root)).replace(SHIPPED_CONFIG, str(conf)))
    assert str(root) in command and str(conf) in command, command
    assert service["Restart"] == "always"
    log = tmp_path / "agent.log"
    sv_conf = tmp_path / "supervisord.conf"
    sv_conf.write_text(f"""
[supervisord]
logfile={tmp_path / "supervisord.log"}
pidfile={tmp_path / "supervisord.pid"}

[program:edge]
command={command}
directory={work}
; Restart=always: restarted whatever the exit; startsecs=0 and many retries: a crash
; loop is restarted too (the unit's StartLimitIntervalSec=0), the launcher ends it
autorestart=true
exitcodes={service["SuccessExitStatus"].replace(" ", ",")}
startsecs=0
startretries=1000
stopsignal={service["KillSignal"].removeprefix("SIG")}
stopwaitsecs={service["TimeoutStopSec"]}
redirect_stderr=true
stdout_logfile={log}
stdout_logfile_maxbytes=0
""")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([str(supervisord), "-n", "-c", str(sv_conf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Box(root=root, store_id=store_id, supervisord=proc, log=log,
                  metrics_port=metrics_port)
    finally:
        proc.send_signal(signal.SIGTERM)  # stops the agent (SIGTERM), then itself
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        # A pip orphaned by the kill -9 (systemd would end it with the unit's cgroup).
        for pid in processes_mentioning(str(root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@contextlib.asynccontextmanager
async def cloud_and_box(tmp_path: Path,
                        mosquitto_factory: Callable[[], Mosquitto]) -> AsyncIterator[
                            tuple[Fleet, Box]]:
    brokers: list[Mosquitto] = []

    def broker() -> Mosquitto:
        brokers.append(mosquitto_factory())
        return brokers[-1]

    async with fleet(tmp_path, broker, 0) as f:  # the cloud alone; the box is below
        r = await f.http.get("/api/v1/artifacts/keys", headers=auth(DEVICE))
        assert r.status_code == 200, r.text
        key = r.json()[0]["public_key"]
        with box(tmp_path, cloud=brokers[0], local=mosquitto_factory(),
                 api=str(f.http.base_url).rstrip("/"), key=key) as b:
            yield f, b


async def store(f: Fleet, store_id: str) -> dict[str, Any]:
    r = await f.http.get("/api/v1/stores", headers=auth(ADMIN))
    return next((s for s in r.json() if s["store_id"] == store_id), {})


async def until_running(f: Fleet, b: Box, version: str, *, within_s: float = 30) -> None:
    async def running() -> bool:
        s = await store(f, b.store_id)
        return bool(s.get("online")) and s.get("agent_version") == version

    try:
        await until_true(running, what=f"agent {version} online", within_s=within_s)
    except AssertionError as err:
        raise AssertionError(f"{err}; store {await store(f, b.store_id)}\n{b.tail()}") from err


async def until_state(f: Fleet, rollout: str, state: str, *,
                      within_s: float = 90) -> dict[str, Any]:
    """The rollout once in ``state`` (each agent start takes seconds on a busy CI box)."""
    got: dict[str, Any] = {}

    async def reached() -> bool:
        got.update(await f.get(rollout))
        return got["state"] == state

    await until_true(reached, what=f"rollout {state}", within_s=within_s)
    return got


async def offer(f: Fleet, b: Box, wheel: Path, version: str, **plan: Any) -> tuple[str, str]:
    """Upload the release and roll it out to the box; (sha256, rollout id)."""
    body = await asyncio.to_thread(wheel.read_bytes)
    r = await f.http.post("/api/v1/artifacts", content=body, headers=auth(ADMIN),
                          params={"kind": "agent", "target": "agent", "version": version})
    assert r.status_code == 201, r.text
    sha = str(r.json()["payload"]["sha256"])
    r = await f.http.post("/api/v1/rollouts", headers=auth(ADMIN), json={
        "sha256": sha, "device": "agent", "stores": [b.store_id], **plan})
    assert r.status_code == 201, r.text
    return sha, str(r.json()["id"])


# ---- the scenarios -------------------------------------------------------------------

async def test_good_broken_and_killed_installs_under_a_supervisor(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto], wheels: dict[str, Path]
) -> None:
    """One box through three releases (each agent start costs seconds, so one story)."""
    async with cloud_and_box(tmp_path, mosquitto_factory) as (f, b):
        await until_running(f, b, BASE)
        first = b.agent_pid()

        # 0.2.0: switched, restarted into by the supervisor, succeeded
        sha2, rollout = await offer(f, b, wheels["0.2.0"], "0.2.0", deadline_s=300)
        done = await until_state(f, rollout, "completed")
        assert [t["state"] for t in done["targets"]] == ["succeeded"]
        good = release_name("0.2.0", sha2)
        assert b.releases.current() == good and b.releases.previous() is None
        await until_running(f, b, "0.2.0")
        assert b.agent_pid() not in (None, first), "the supervisor did not restart it"
        trial = b.releases.read_trial()
        assert trial is not None and (trial.state, trial.reported) == ("committed", True)
        assert "exit status 75; expected" in (tmp_path / "supervisord.log").read_text()
        assert await b.metric("storefleet_agent_updates_total", outcome="committed") == 1

        # 0.3.0, broken: switched back by the launcher on its own, long before the deadline
        sha3, rollout = await offer(f, b, wheels["0.3.0"], "0.3.0", deadline_s=300)
        started = time.monotonic()
        halted = await until_state(f, rollout, "halted")
        (target,) = halted["targets"]
        assert target["state"] == "failed"
        assert target["detail"].startswith("rolled back: "), target
        assert time.monotonic() - started < 100, "not rolled back well before the deadline"
        assert (b.releases.current(), b.releases.previous()) == (good, None)
        await until_running(f, b, "0.2.0")
        trial = b.releases.read_trial()
        assert trial is not None and trial.state == "rolled_back" and trial.reported
        assert trial.starts == trial.max_starts + 1
        assert await b.metric("storefleet_agent_updates_total", outcome="rolled_back") == 1
        assert "release 0.3.0 is broken on purpose" in b.log.read_text()
        # the failed (store, agent, 0.3.0) is never offered again
        r = await f.http.post("/api/v1/rollouts", headers=auth(ADMIN), json={
            "sha256": sha3, "device": "agent", "stores": [b.store_id]})
        assert r.status_code == 201, r.text
        again = await until_state(f, str(r.json()["id"]), "completed")
        assert [t["state"] for t in again["targets"]] == ["skipped"]
        assert f.offers(str(r.json()["id"])) == []

        # 0.4.0: kill -9 of the agent while it unpacks; after the supervisor's restart
        # the old (0.2.0) or the new release runs, complete, never neither
        victim = b.agent_pid()
        assert victim is not None
        sha4, rollout = await offer(f, b, wheels["0.4.0"], "0.4.0", deadline_s=300)
        new = release_name("0.4.0", sha4)

        async def unpacking() -> bool:
            trial = b.releases.read_trial()
            return trial is not None and (trial.to, trial.state) == (new, "unpacking")

        await until_true(unpacking, what="the unpack under way", within_s=30)
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            return b.agent_pid() not in (None, victim)

        await until_true(restarted, what="the supervisor's restart", within_s=10)
        current = b.releases.current()
        assert current in (good, new)
        assert current is not None
        assert (b.releases.path(current) / "edge_agent" / "__init__.py").exists()
        await until_running(f, b, "0.2.0" if current == good else "0.4.0")
        got = await until_state(f, rollout, "halted" if current == good else "completed")
        (target,) = got["targets"]
        if current == good:
            assert target["detail"].startswith("interrupted: "), target


def test_shipped_unit_verifies_and_runs_the_launcher(tmp_path: Path) -> None:
    """``systemd-analyze verify`` of the unit as shipped, its launcher path pointed at an
    executable that exists here (verify checks that), with no warning at all."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed")
    service = unit_service(UNIT.read_text())
    assert service["ExecStart"].startswith(f"{SHIPPED_LAUNCHER} --root {SHIPPED_ROOT} -- run")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["storefleet-edge-launcher"] == "edge_agent.selfupdate.launcher:main"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(SHIPPED_LAUNCHER, sys.executable))
    proc = subprocess.run([str(analyze), "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


async def test_the_agent_is_busy_while_a_device_is(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    """A restart stops every driver: no agent install while a customer is mid-vend."""
    async with fleet(tmp_path, mosquitto_factory, 1) as f:
        agent, cabinet = f.agents[0], f.cabinets[0]
        installer = AgentInstaller(agent, launched=None)
        offer = Offer(rollout_id="r-1", sha256="ab" * 32, target="agent", version="0.2.0",
                      device="agent", deadline_ms=0)
        assert installer.busy(offer) is None
        cabinet.tap(500)  # a card tapped: the customer is still choosing
        await wait_until(lambda: agent.drivers.health()["vend-1"]["session"] == "session",
                         what="vend session open")
        assert installer.busy(offer) == "vend-1: a vend session is in progress (session)"
