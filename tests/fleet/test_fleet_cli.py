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
import hashlib
import http.server
import json
import os
import re
import signal
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

from fleet.output import Exit
from protocols import encode, topics
from protocols.messages import Birth, Death, DeviceInfo, ShadowReported
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
DEAD_STORE = "S003"  # born, then died: offline
REGION = "north"  # S002's region
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
    url_broker: str


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
        now = int(time.time() * 1000)
        asyncio.run(publish(cloud_broker.url, [
            (topics.state(BIRTH_STORE), encode(birth)),
            (topics.state(DEAD_STORE), encode(Birth(bd_seq=1, ts=now, agent_version="6.0.0"))),
            (topics.state(DEAD_STORE), encode(Death(bd_seq=1, ts=now + 1))),
        ], retain=True))

        def stores_in() -> bool:
            stores = {s["store_id"]: s for s in _get(f"{url}/api/v1/stores", ADMIN)}
            return (stores.get(AGENT_STORE, {}).get("online") is True
                    and stores.get(BIRTH_STORE, {}).get("devices_total") == len(S002_DEVICES)
                    and stores.get(DEAD_STORE, {}).get("online") is False)

        _wait("the stores in the cloud", stores_in, timeout=60, procs=procs)
        httpx.put(f"{url}/api/v1/regions/{REGION}/stores/{BIRTH_STORE}", timeout=5,
                  headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
        yield Cloud(url=url, procs=procs, url_broker=cloud_broker.url)
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


def one_line_error(proc: subprocess.CompletedProcess[str], code: Exit) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
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
    assert sorted(by_store) == [AGENT_STORE, BIRTH_STORE, DEAD_STORE]
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
    as_json = fleet("cmd", AGENT_STORE, "set_log_level", "--json", '{"level": "info"}',
                    "--wait", "30", "--api", cloud.url, "--token", ADMIN)
    assert as_json.returncode == 0, (as_json.stdout, as_json.stderr)
    assert json.loads(as_json.stdout)["result"] == {"level": "INFO"}

    diag = fleet("cmd", AGENT_STORE, "get_diagnostics", "--wait", "30", "--api", cloud.url,
                 "--token", ADMIN)
    assert diag.returncode == 0, (diag.stdout, diag.stderr)
    assert json.loads(diag.stdout)["result"]["store_id"] == AGENT_STORE

    rebirth = fleet("cmd", AGENT_STORE, "rebirth", "--wait", "30", "--api", cloud.url,
                    "--token", ADMIN)
    assert rebirth.returncode == 0, (rebirth.stdout, rebirth.stderr)
    assert json.loads(rebirth.stdout)["result"]["bd_seq"] >= 1


def test_cmd_that_is_not_ok_exits_3_and_4_with_the_result(cloud: Cloud) -> None:
    bad_level = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "level=LOUD", "--wait",
                      "30", "--api", cloud.url, "--token", ADMIN)
    assert bad_level.returncode == Exit.NOT_OK, (bad_level.stdout, bad_level.stderr)
    result = json.loads(bad_level.stdout)
    assert result["status"] == "rejected" and "log_level must be one of" in result["error"]

    unknown = fleet("cmd", AGENT_STORE, "self_destruct", "--wait", "30", "--api", cloud.url,
                    "--token", ADMIN)
    assert unknown.returncode == Exit.NOT_OK
    assert json.loads(unknown.stdout)["status"] == "unknown_command"

    # S002 has no agent listening: the command stays pending past --wait
    pending = fleet("cmd", BIRTH_STORE, "ping", "--wait", "0.5", "--api", cloud.url,
                    "--token", ADMIN)
    assert pending.returncode == Exit.TIMEOUT
    assert json.loads(pending.stdout)["status"] == "pending"


def test_cmd_refuses_an_argument_that_is_not_key_value(cloud: Cloud) -> None:
    proc = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "debug", "--api", cloud.url,
                 "--token", ADMIN)
    assert proc.returncode == Exit.USAGE
    assert "'debug' is not key=value" in proc.stderr and "Traceback" not in proc.stderr
    not_json = fleet("cmd", AGENT_STORE, "set_log_level", "--json", "{level", "--api",
                     cloud.url, "--token", ADMIN)
    assert not_json.returncode == Exit.USAGE and "--json is not JSON" in not_json.stderr


def test_unknown_store_and_forbidden_role_are_one_line_errors(cloud: Cloud) -> None:
    unknown = fleet("cmd", "S404", "ping", "--api", cloud.url, "--token", ADMIN)
    assert (one_line_error(unknown, Exit.NOT_FOUND)
            == "error: 404 Not Found: no store or device 'S404'")
    show = fleet("store", "show", "S404", "--api", cloud.url, "--token", ADMIN)
    assert one_line_error(show, Exit.NOT_FOUND) == "error: 404 Not Found: no store 'S404'"
    forbidden = fleet("cmd", BIRTH_STORE, "ping", "--api", cloud.url, "--token", MANAGER_S002)
    line = one_line_error(forbidden, Exit.AUTH)
    assert line.startswith("error: 403 Forbidden: ") and "send commands" in line


EVERY_COMMAND = [["stores"], ["stores", "ls"], ["store", "show", AGENT_STORE], ["devices"],
                 ["devices", "ls"], ["device", "show", "S002-cart-01"],
                 ["cmd", AGENT_STORE, "ping"], ["diag", AGENT_STORE], ["logs", AGENT_STORE]]


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_bad_or_missing_token_is_a_clear_error(cloud: Cloud, command: list[str]) -> None:
    bad = fleet(*command, "--api", cloud.url, "--token", "not-a-real-token-42")
    assert one_line_error(bad, Exit.AUTH) == (
        "error: 401 Unauthorized: unknown bearer token "
        "(pass a valid --token, set STOREFLEET_TOKEN or run `fleet login`)")
    missing = fleet(*command, "--api", cloud.url)
    assert "401 Unauthorized: missing bearer token" in one_line_error(missing, Exit.AUTH)


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_unreachable_api_is_one_line_not_a_traceback(command: list[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = one_line_error(fleet(*command, "--api", nobody, "--token", ADMIN), Exit.UNREACHABLE)
    assert line.startswith(f"error: cannot reach the cloud API at {nobody}: ")
    assert "Connection refused" in line
    not_a_url = one_line_error(fleet(*command, "--api", "http://[::1", "--token", ADMIN),
                               Exit.UNREACHABLE)
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
            line = one_line_error(fleet("stores", "--api", api, "--token", ADMIN), Exit.FAILED)
        finally:
            server.shutdown()
            thread.join(5)
    # the file server's own content type follows
    assert line.startswith(f"error: 200 {api}/api/v1/stores did not answer JSON: ")


# ---- issue 14: login, ls filters, show, cmd to a device, diag, logs (decision 0038) ----


def test_help_documents_the_exit_codes() -> None:
    proc = fleet("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for code in Exit:
        assert f"{int(code)} " in text
    assert "5 the cloud API cannot be reached" in text and "fleet login" in text


def test_shell_completion_through_the_entry_point() -> None:
    """typer's completion, as bash asks for it after `fleet --install-completion`."""
    env = {"_FLEET_COMPLETE": "complete_bash", "COMP_WORDS": "fleet sto", "COMP_CWORD": "1"}
    proc = fleet(env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["stores", "store"]
    env = {"_FLEET_COMPLETE": "complete_bash", "COMP_WORDS": "fleet devices ls --un",
           "COMP_CWORD": "3"}
    assert fleet(env=env).stdout.split() == ["--unhealthy"]


def test_login_saves_0600_and_the_other_commands_use_it(cloud: Cloud, tmp_path: Path) -> None:
    home = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    saved = tmp_path / "storefleet" / "config.json"
    bad = fleet("login", "--api", cloud.url, "--token", "not-a-real-token-42", env=home)
    assert one_line_error(bad, Exit.AUTH).startswith("error: 401 Unauthorized")
    assert not saved.exists()  # a token the cloud refuses is not saved

    ok = fleet("login", "--api", cloud.url, "--token", TECH, env=home)
    assert ok.returncode == 0, ok.stderr
    assert f"logged in to {cloud.url}: 3 store(s) visible" in ok.stdout
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text()) == {"api": cloud.url, "token": TECH}

    listed = fleet("stores", "ls", "--json", env=home)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    # the environment overrides the file, and an option overrides the environment
    env_token = fleet("stores", "ls", "--json", env={**home, "STOREFLEET_TOKEN": MANAGER_S002})
    assert [s["store_id"] for s in json.loads(env_token.stdout)] == [BIRTH_STORE]
    option = fleet("stores", "ls", "--json", "--token", ADMIN,
                   env={**home, "STOREFLEET_TOKEN": "not-a-real-token-42"})
    assert option.returncode == 0, option.stderr
    # the saved token is never sent to another API named on the command line
    other = f"http://localhost:{cloud.url.rsplit(':', 1)[1]}"
    missing = fleet("stores", "ls", "--api", other, env=home)
    assert "missing bearer token" in one_line_error(missing, Exit.AUTH)

    saved.write_text("{not json")
    broken = one_line_error(fleet("stores", "ls", env=home), Exit.FAILED)
    assert broken.startswith(f"error: fleet config {saved}: unreadable")
    assert broken.endswith("run `fleet login` again")


def test_stores_ls_by_region_and_offline(cloud: Cloud) -> None:
    def listed(*args: str) -> list[str]:
        proc = fleet("stores", "ls", *args, "--json", "--api", cloud.url, "--token", ADMIN)
        assert proc.returncode == 0, proc.stderr
        return [s["store_id"] for s in json.loads(proc.stdout)]

    assert listed() == [AGENT_STORE, BIRTH_STORE, DEAD_STORE]
    assert listed("--region", REGION) == [BIRTH_STORE]
    assert listed("--region", "south") == []
    assert listed("--offline") == [DEAD_STORE]
    table = fleet("stores", "ls", "--offline", "--api", cloud.url, "--token", ADMIN)
    assert [row[:2] for row in table_rows(table.stdout)[1:]] == [[DEAD_STORE, "False"]]


def test_store_show_has_its_status_and_devices(cloud: Cloud) -> None:
    proc = fleet("store", "show", BIRTH_STORE, "--api", cloud.url, "--token", TECH)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert ["agent_version", "7.7.7"] in rows and ["devices_total", "3"] in rows
    assert [BIRTH_STORE, "S002-vend-01", "vending", "False", "VC-8", "0.9"] in rows
    as_json = json.loads(fleet("store", "show", BIRTH_STORE, "--json", "--api", cloud.url,
                               "--token", TECH).stdout)
    assert as_json["birth"]["agent_version"] == "7.7.7"
    assert [d["device_id"] for d in as_json["devices"]] == [d.device_id for d in S002_DEVICES]


def test_devices_ls_by_kind_and_unhealthy(cloud: Cloud) -> None:
    def listed(*args: str) -> list[str]:
        proc = fleet("devices", "ls", *args, "--json", "--api", cloud.url, "--token", TECH)
        assert proc.returncode == 0, proc.stderr
        return [d["device_id"] for d in json.loads(proc.stdout)]

    assert listed("--kind", "esl") == ["S002-esl-01"]
    assert listed("--unhealthy") == ["S002-vend-01"]
    assert listed("--unhealthy", "--kind", "cart") == []
    assert listed("--store", AGENT_STORE) == []
    table = fleet("devices", "ls", "--unhealthy", "--api", cloud.url, "--token", TECH)
    assert table_rows(table.stdout)[1:] == [
        [BIRTH_STORE, "S002-vend-01", "vending", "False", "VC-8", "0.9"]]


def test_device_show_says_why_and_shows_the_shadow(cloud: Cloud) -> None:
    """The agent's report of the driver (why it is down) and the device's shadow."""
    now = int(time.time() * 1000)
    why = {"state": "crashed", "online": False, "alarms": ["door_open"],
           "details": {"last_error": "no reply on /dev/ttyUSB0"}}
    asyncio.run(publish(cloud.url_broker, [
        (topics.shadow_reported(BIRTH_STORE), encode(ShadowReported(
            version=0, ts=now, state={"devices_health": {"S002-vend-01": why}}))),
        (topics.shadow_reported(BIRTH_STORE, "S002-vend-01"), encode(ShadowReported(
            version=0, ts=now, state={"door_timeout_s": 30}))),
    ]))

    def shown() -> dict[str, Any] | None:
        proc = fleet("device", "show", "S002-vend-01", "--json", "--api", cloud.url,
                     "--token", TECH)
        assert proc.returncode == 0, proc.stderr
        out: dict[str, Any] = json.loads(proc.stdout)
        return out if out["driver"] and out["shadow"] else None

    got = _wait("the reported shadows", shown, timeout=30, procs=cloud.procs)
    assert got["device"]["online"] is False and got["driver"] == why
    assert got["shadow"]["reported"] == {"door_timeout_s": 30}

    table = fleet("device", "show", f"{BIRTH_STORE}/S002-vend-01", "--api", cloud.url,
                  "--token", TECH)
    assert table.returncode == 0, table.stderr
    rows = table_rows(table.stdout)
    assert ["state", "crashed"] in rows and ["alarms", '["door_open"]'] in rows
    assert ["door_timeout_s", "", "30", ""] in rows

    nothing = fleet("device", "show", "S002-nope", "--api", cloud.url, "--token", TECH)
    assert one_line_error(nothing, Exit.NOT_FOUND) == (
        "error: 404 Not Found: no device 'S002-nope'")


def test_shadow_rows_mark_what_the_store_has_not_applied() -> None:
    from fleet.output import shadow_rows

    rows = shadow_rows({"brightness": 5, "mode": "eco", "gone": None, "going": None},
                       {"brightness": 3, "mode": "eco", "fw": "1.0", "going": 1})
    assert rows == [
        {"key": "brightness", "desired": 5, "reported": 3, "differs": True},
        {"key": "fw", "desired": None, "reported": "1.0", "differs": False},
        {"key": "going", "desired": None, "reported": 1, "differs": True},  # null: delete
        {"key": "gone", "desired": None, "reported": None, "differs": False},  # deleted
        {"key": "mode", "desired": "eco", "reported": "eco", "differs": False},
    ]


def test_cmd_to_a_device_goes_to_its_store(cloud: Cloud) -> None:
    """A device target is routed to the device's store: S002 has no agent, so the
    command is stored for S002/S002-esl-01 and stays pending."""
    proc = fleet("cmd", "S002-esl-01", "ping", "--wait", "0.5", "--api", cloud.url,
                 "--token", ADMIN)
    assert proc.returncode == Exit.TIMEOUT, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["store_id"], result["target"]) == (BIRTH_STORE, "S002-esl-01")


def test_diag_bundle_to_a_file_and_printed(cloud: Cloud, tmp_path: Path) -> None:
    # a payload the agent refuses: it logs a warning, which the bundle's recent errors show
    asyncio.run(publish(cloud.url_broker, [(topics.cmd(AGENT_STORE), b"not json at all")]))
    out = tmp_path / "diag.json"

    def bundle() -> dict[str, Any] | None:
        proc = fleet("diag", AGENT_STORE, "--out", str(out), "--api", cloud.url,
                     "--token", TECH)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        got: dict[str, Any] = json.loads(out.read_text())
        return got if got["recent_errors"] else None

    got = _wait("the refused payload in the bundle", bundle, timeout=30, procs=cloud.procs)
    diag = got["diagnostics"]
    assert got["store_id"] == AGENT_STORE and diag["store_id"] == AGENT_STORE
    assert {"agent_version", "outbox_depth", "outbox_oldest_age_ms", "tasks",
            "devices_health"} <= set(diag)
    assert diag["tasks"]["uplink"]["state"] == "running"
    assert all(line["level"] in ("WARNING", "ERROR", "CRITICAL")
               for line in got["recent_errors"])
    assert any(line["message"].startswith("bad command payload: not_json")
               and line["logger"] == "edge_agent.commands" for line in got["recent_errors"])

    printed = fleet("diag", AGENT_STORE, "--api", cloud.url, "--token", TECH)
    assert printed.returncode == 0, printed.stderr
    rows = table_rows(printed.stdout)
    assert ["store_id", AGENT_STORE] in rows and ["uplink", "running", "0", ""] in rows
    assert any(row[2:4] == ["WARNING", "edge_agent.commands"] for row in rows)

    nobody = fleet("diag", BIRTH_STORE, "--wait", "0.5", "--api", cloud.url, "--token", TECH)
    assert nobody.returncode == Exit.TIMEOUT


def test_logs_and_follow(cloud: Cloud) -> None:
    info = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "level=info", "--wait", "30",
                 "--api", cloud.url, "--token", ADMIN)
    assert info.returncode == 0, info.stderr
    ping = json.loads(fleet("cmd", AGENT_STORE, "ping", "--wait", "30", "--api", cloud.url,
                            "--token", ADMIN).stdout)
    lines = fleet("logs", AGENT_STORE, "--json", "--api", cloud.url, "--token", TECH)
    assert lines.returncode == 0, lines.stderr
    got = [json.loads(line) for line in lines.stdout.splitlines()]
    assert any(f"command ping {ping['cmd_id']} -> ok" in ln["message"] for ln in got)
    assert [ln["seq"] for ln in got] == sorted(ln["seq"] for ln in got)

    errors_only = fleet("logs", AGENT_STORE, "--level", "error", "--json", "--api", cloud.url,
                        "--token", TECH)
    assert errors_only.returncode == 0, errors_only.stderr
    assert not any("command ping" in line for line in errors_only.stdout.splitlines())
    loud = fleet("logs", AGENT_STORE, "--level", "loud", "--api", cloud.url, "--token", TECH)
    assert loud.returncode == Exit.USAGE and "--level must be one of" in loud.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFLEET_")}
    # Started as from a terminal: SIGINT at its default (a test run started in the
    # background by a shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt). PYTHONFAULTHANDLER: if Ctrl-C does not stop it, SIGABRT makes
    # it print every thread's stack, so the failure says where it hung.
    follow = subprocess.Popen(
        [str(FLEET), "logs", AGENT_STORE, "--follow", "--interval", "0.3", "--api", cloud.url,
         "--token", TECH], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with follow:  # its pipes closed whatever happens
        try:
            time.sleep(2)  # the first poll is done: what follows is new
            later = json.loads(fleet("cmd", AGENT_STORE, "ping", "--wait", "30", "--api",
                                     cloud.url, "--token", ADMIN).stdout)
            time.sleep(3)
        finally:
            follow.send_signal(signal.SIGINT)
            try:
                out, err = follow.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                follow.send_signal(signal.SIGABRT)
                _, err = follow.communicate(timeout=10)
                pytest.fail(f"fleet logs --follow did not stop on Ctrl-C:\n{err[-4000:]}")
    assert follow.returncode == 0, err
    assert out.count(f"command ping {later['cmd_id']} -> ok") == 1  # once: no repeats


# ---- issue 14: who sent a command and why; sensitive commands (decision 0044) ----------


def _sender(token: str, role: str) -> str:
    """The sender the API records for a token configured without a name."""
    return f"{role}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def test_cmd_sensitive_needs_a_reason_and_an_allowed_role(cloud: Cloud) -> None:
    unlock = ["cmd", f"{BIRTH_STORE}/S002-vend-01", "unlock", "--json", '{"door": 3}',
              "--api", cloud.url]
    no_reason = fleet(*unlock, "--token", ADMIN)
    line = one_line_error(no_reason, Exit.USAGE)
    assert line.startswith("error: 422 ") and "sensitive command" in line
    assert line.endswith('(say why with --reason "...")')

    tech = fleet(*unlock, "--reason", "restock", "--token", TECH)
    line = one_line_error(tech, Exit.AUTH)
    assert line.startswith("error: 403 Forbidden: ")
    assert "'field-tech'" in line and "allowed roles: hq-admin, store-manager" in line

    # the store's manager may, with a reason; S002 has no agent, so it stays pending
    sent = fleet(*unlock, "--reason", "restock door 3", "--wait", "0.5",
                 "--token", MANAGER_S002)
    assert sent.returncode == Exit.TIMEOUT, sent.stderr
    result = json.loads(sent.stdout)
    assert (result["sender"], result["sender_role"], result["reason"]) == (
        _sender(MANAGER_S002, "store-manager"), "store-manager", "restock door 3")


def test_cmd_result_and_the_boxs_log_say_who_sent_it_and_why(cloud: Cloud) -> None:
    info = fleet("cmd", AGENT_STORE, "set_log_level", "--arg", "level=info", "--wait", "30",
                 "--api", cloud.url, "--token", ADMIN)
    assert info.returncode == 0, info.stderr
    ping = fleet("cmd", AGENT_STORE, "ping", "--reason", "checking after a power cut",
                 "--wait", "30", "--api", cloud.url, "--token", TECH)
    assert ping.returncode == 0, ping.stderr
    result = json.loads(ping.stdout)
    who = _sender(TECH, "field-tech")
    assert (result["status"], result["sender"], result["sender_role"], result["reason"]) == (
        "ok", who, "field-tech", "checking after a power cut")
    lines = fleet("logs", AGENT_STORE, "--json", "--api", cloud.url, "--token", TECH)
    assert lines.returncode == 0, lines.stderr
    messages = [json.loads(line)["message"] for line in lines.stdout.splitlines()]
    assert any(f"command ping {result['cmd_id']} -> ok (sent by {who} (field-tech), "
               "reason: 'checking after a power cut')" in m for m in messages), messages
