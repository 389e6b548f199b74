"""``fleet``, the field tech's CLI, through its console script against a running cloud.

One stack for the module: a real Mosquitto (the cloud broker), ``storefleet cloud serve
--ingest`` on a free port with SQLite and real tokens, one real agent (store S001, on its
own local bus) that answers commands, and a second store, S002, whose agent's birth is
published over the broker so that its devices are known exactly. Every ``fleet`` command
runs as a subprocess of ``.venv/bin/fleet`` and its output is read as a user reads it.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocols import encode, topics
from protocols.messages import Birth, DeviceInfo
from tests.cloud.conftest import publish
from tests.integration.harness import Proc
from tests.services import Mosquitto, free_port

pytestmark = pytest.mark.mosquitto

FLEET = Path(sys.executable).parent / "fleet"
ADMIN = "fleet-test-admin-0001"
TECH = "fleet-test-tech-00001"
MANAGER_S002 = "fleet-test-manager-s002"
AGENT_STORE = "S001"
BIRTH_STORE = "S002"
# S002's devices as its agent reports them: three, two online.
S002_DEVICES = [
    DeviceInfo(device_id="S002-cart-01", kind="cart", online=True, model="SC-2", fw="1.4.0"),
    DeviceInfo(device_id="S002-esl-01", kind="esl", online=True, model="AP-9", fw="3.0.1"),
    DeviceInfo(device_id="S002-vend-01", kind="vending", online=False, model="VC-8", fw="0.9"),
]


@dataclass
class Cloud:
    url: str
    procs: list[Proc]


def _get(url: str, token: str) -> Any:
    resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    resp.raise_for_status()
    return resp.json()


def _wait(what: str, check: Any, *, timeout: float, procs: list[Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        for p in procs:
            if not p.alive:
                raise AssertionError(f"{p.name} exited while waiting for {what}:\n{p.tail()}")
        time.sleep(0.25)
    logs = "\n".join(f"--- {p.name}\n{p.tail(30)}" for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("fleet")
    cloud_broker = Mosquitto(workdir=tmp / "cloud-broker")
    local_broker = Mosquitto(workdir=tmp / "local-broker")
    procs: list[Proc] = []
    try:
        cloud_broker.start()
        local_broker.start()
        port = free_port()
        api = Proc(
            name="api",
            args=["cloud", "serve", "--port", str(port), "--db", f"sqlite:///{tmp / 'cloud.db'}",
                  "--mqtt", cloud_broker.url, "--ingest", "--dev", "--log-level", "warning"],
            logdir=tmp / "logs",
            env={"STOREFLEET_API_TOKENS": f"{ADMIN}:hq-admin,{TECH}:field-tech,"
                                          f"{MANAGER_S002}:store-manager@{BIRTH_STORE}",
                 "STOREFLEET_INGEST_CLIENT_ID": "fleet-test-ingest"},
        )
        agent = Proc(
            name="agent",
            args=["edge", "run", "--store", AGENT_STORE, "--cloud", cloud_broker.url,
                  "--local-bus", local_broker.url, "--data-dir", str(tmp / "edge"),
                  "--metrics-port", "0", "--log-level", "WARNING"],
            logdir=tmp / "logs",
        )
        procs += [api.start(), agent.start()]
        url = f"http://127.0.0.1:{port}"
        _wait("the API", lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
              timeout=60, procs=procs)
        birth = Birth(bd_seq=9, ts=int(time.time() * 1000), agent_version="7.7.7",
                      devices=S002_DEVICES)
        asyncio.run(publish(cloud_broker.url,
                            [(topics.state(BIRTH_STORE), encode(birth))], retain=True))

        def both_stores_in() -> bool:
            stores = {s["store_id"]: s for s in _get(f"{url}/api/v1/stores", ADMIN)}
            return (stores.get(AGENT_STORE, {}).get("online") is True
                    and stores.get(BIRTH_STORE, {}).get("devices_total") == len(S002_DEVICES))

        _wait("both stores online in the cloud", both_stores_in, timeout=60, procs=procs)
        yield Cloud(url=url, procs=procs)
    finally:
        for p in reversed(procs):
            p.terminate(timeout=10)
        local_broker.kill()
        cloud_broker.kill()


def fleet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fleet ARGS`` as a user runs it; wide columns so that rich does not wrap tables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STOREFLEET_")}
    return subprocess.run([str(FLEET), *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**base, "COLUMNS": "200", **(env or {})})


def table_rows(output: str) -> list[list[str]]:
    """The cells of a rich table's rows (header included), as printed."""
    return [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]]  # header: heavy bars
            for line in output.splitlines() if line[:1] in ("│", "┃")]


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_stores_table_shows_each_stores_device_counts(cloud: Cloud) -> None:
    proc = fleet("stores", "--api", cloud.url, "--token", ADMIN)
    assert proc.returncode == 0, proc.stderr
    header, *rows = table_rows(proc.stdout)
    assert header == ["store_id", "online", "bd_seq", "agent_version", "devices_online",
                      "devices_total"]
    by_store = {row[0]: row for row in rows}
    assert sorted(by_store) == [AGENT_STORE, BIRTH_STORE]
    assert by_store[BIRTH_STORE] == [BIRTH_STORE, "True", "9", "7.7.7", "2", "3"]
    agent_row = by_store[AGENT_STORE]
    assert agent_row[1] == "True" and agent_row[5] == "0"  # an agent with no devices yet


def test_stores_json_is_the_apis_list(cloud: Cloud) -> None:
    proc = fleet("stores", "--api", cloud.url, "--token", ADMIN, "--json")
    assert proc.returncode == 0, proc.stderr
    stores = json.loads(proc.stdout)
    api = _get(f"{cloud.url}/api/v1/stores", ADMIN)

    def steady(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # S002's row comes from one ingested birth and stays put but for last_seen_ms;
        # the running agent S001 re-births and reports health between the two reads
        return [{k: v for k, v in r.items() if k != "last_seen_ms"}
                if r["store_id"] == BIRTH_STORE else {"store_id": r["store_id"]}
                for r in rows]

    assert steady(stores) == steady(api)
    s002 = next(s for s in stores if s["store_id"] == BIRTH_STORE)
    assert (s002["devices_total"], s002["devices_online"]) == (3, 2)


def test_api_and_token_from_the_environment(cloud: Cloud) -> None:
    proc = fleet("stores", "--json",
                 env={"STOREFLEET_API": cloud.url, "STOREFLEET_TOKEN": MANAGER_S002})
    assert proc.returncode == 0, proc.stderr
    # a store-scoped manager's token sees its own store only
    assert [s["store_id"] for s in json.loads(proc.stdout)] == [BIRTH_STORE]


def test_devices_table_and_filter(cloud: Cloud) -> None:
    proc = fleet("devices", "--api", cloud.url, "--token", TECH)
    assert proc.returncode == 0, proc.stderr
    header, *rows = table_rows(proc.stdout)
    assert header == ["store_id", "device_id", "kind", "online", "model", "fw"]
    assert [BIRTH_STORE, "S002-vend-01", "vending", "False", "VC-8", "0.9"] in rows
    assert {row[1] for row in rows if row[0] == BIRTH_STORE} == {
        d.device_id for d in S002_DEVICES}

    only = fleet("devices", "--store", BIRTH_STORE, "--json", "--api", cloud.url,
                 "--token", TECH)
    assert only.returncode == 0, only.stderr
    listed = json.loads(only.stdout)
    assert [(d["device_id"], d["kind"], d["online"]) for d in listed] == [
        (d.device_id, d.kind, d.online) for d in S002_DEVICES]

    none = fleet("devices", "--store", "S404", "--json", "--api", cloud.url, "--token", TECH)
    assert none.returncode == 0 and json.loads(none.stdout) == []


def test_cmd_ping_is_answered_by_the_agent(cloud: Cloud) -> None:
    proc = fleet("cmd", AGENT_STORE, "ping", "--wait", "30", "--api", cloud.url,
                 "--token", TECH)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["store_id"] == AGENT_STORE
    assert result["name"] == "ping" and result["result"]["pong"] is True


def test_cmd_with_args_and_every_agent_command(cloud: Cloud) -> None:
    level = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "level=debug", "--wait", "30",
                  "--api", cloud.url, "--token", ADMIN)
    assert level.returncode == 0, (level.stdout, level.stderr)
    assert json.loads(level.stdout)["result"] == {"level": "DEBUG"}

    diag = fleet("cmd", AGENT_STORE, "get_diagnostics", "--wait", "30", "--api", cloud.url,
                 "--token", ADMIN)
    assert diag.returncode == 0, (diag.stdout, diag.stderr)
    assert json.loads(diag.stdout)["result"]["store_id"] == AGENT_STORE

    rebirth = fleet("cmd", AGENT_STORE, "rebirth", "--wait", "30", "--api", cloud.url,
                    "--token", ADMIN)
    assert rebirth.returncode == 0, (rebirth.stdout, rebirth.stderr)
    assert json.loads(rebirth.stdout)["result"]["bd_seq"] >= 1


def test_cmd_that_is_not_ok_exits_2_with_the_result(cloud: Cloud) -> None:
    bad_level = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "level=LOUD", "--wait",
                      "30", "--api", cloud.url, "--token", ADMIN)
    assert bad_level.returncode == 2, (bad_level.stdout, bad_level.stderr)
    result = json.loads(bad_level.stdout)
    assert result["status"] == "rejected" and "log_level must be one of" in result["error"]

    unknown = fleet("cmd", AGENT_STORE, "self_destruct", "--wait", "30", "--api", cloud.url,
                    "--token", ADMIN)
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout)["status"] == "unknown_command"

    # S002 has no agent listening: the command stays pending past --wait
    pending = fleet("cmd", BIRTH_STORE, "ping", "--wait", "0.5", "--api", cloud.url,
                    "--token", ADMIN)
    assert pending.returncode == 2
    assert json.loads(pending.stdout)["status"] == "pending"


def test_cmd_refuses_an_argument_that_is_not_key_value(cloud: Cloud) -> None:
    proc = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "debug", "--api", cloud.url,
                 "--token", ADMIN)
    assert proc.returncode == 2
    assert "'debug' is not key=value" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_store_and_forbidden_role_are_one_line_errors(cloud: Cloud) -> None:
    unknown = fleet("cmd", "S404", "ping", "--api", cloud.url, "--token", ADMIN)
    assert one_line_error(unknown) == "error: 404 Not Found: no store 'S404'"
    forbidden = fleet("cmd", BIRTH_STORE, "ping", "--api", cloud.url, "--token", MANAGER_S002)
    line = one_line_error(forbidden)
    assert line.startswith("error: 403 Forbidden: ") and "send commands" in line


@pytest.mark.parametrize("command", [["stores"], ["devices"], ["cmd", AGENT_STORE, "ping"]])
def test_bad_or_missing_token_is_a_clear_error(cloud: Cloud, command: list[str]) -> None:
    bad = fleet(*command, "--api", cloud.url, "--token", "not-a-real-token-42")
    assert one_line_error(bad) == ("error: 401 Unauthorized: unknown bearer token "
                                   "(pass a valid --token or set STOREFLEET_TOKEN)")
    missing = fleet(*command, "--api", cloud.url)
    assert "401 Unauthorized: missing bearer token" in one_line_error(missing)


@pytest.mark.parametrize("command", [["stores"], ["devices"], ["cmd", AGENT_STORE, "ping"]])
def test_unreachable_api_is_one_line_not_a_traceback(command: list[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = one_line_error(fleet(*command, "--api", nobody, "--token", ADMIN))
    assert line.startswith(f"error: cannot reach the cloud API at {nobody}: ")
    assert "Connection refused" in line
    not_a_url = one_line_error(fleet(*command, "--api", "http://[::1", "--token", ADMIN))
    assert "is not a URL" in not_a_url


def test_a_web_server_that_is_not_the_api_is_a_clear_error(tmp_path: Path) -> None:
    """--api pointing at some other web server (here a plain file server) that answers
    200 with HTML: one line saying so, not a JSON decoding traceback."""
    page = tmp_path / "api" / "v1" / "stores"
    page.parent.mkdir(parents=True)
    page.write_text("<html><body>router admin</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="not-the-api", daemon=True)
        thread.start()
        try:
            api = f"http://127.0.0.1:{server.server_address[1]}"
            line = one_line_error(fleet("stores", "--api", api, "--token", ADMIN))
        finally:
            server.shutdown()
            thread.join(5)
    # the file server's own content type follows
    assert line.startswith(f"error: 200 {api}/api/v1/stores did not answer JSON: ")
