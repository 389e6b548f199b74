"""``fleet artifact upload|ls`` through the console script against the real cloud API
served by uvicorn (decision 0036)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from cloud.main import create_app
from cloud.promotions.signing import SnapshotSigner, verify_document
from cloud.publish import MemoryPublisher
from edge_agent.cartscreen.server import EmbeddedServer
from tests.cloud.conftest import ADMIN, TECH, make_settings
from tests.services import free_port

FLEET = Path(sys.executable).parent / "fleet"
RELEASE = SnapshotSigner.generate()


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}",
                             artifact_dir=str(tmp_path / "blobs"))
    app = create_app(settings, registry=CollectorRegistry(), publisher=MemoryPublisher(),
                     release=RELEASE)
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    # the CLI runs as a blocking subprocess: the server gets its own thread and loop
    thread = threading.Thread(target=server.run, name="fleet-artifacts-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def fleet(api: str | None, token: str | None, *args: str,
          config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("STOREFLEET_API", "STOREFLEET_TOKEN")}
    env.update({"XDG_CONFIG_HOME": str(config), "COLUMNS": "200"})  # `fleet login`'s file
    env.update({k: v for k, v in (("STOREFLEET_API", api), ("STOREFLEET_TOKEN", token)) if v})
    return subprocess.run([str(FLEET), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_upload_then_ls(api_url: str, tmp_path: Path) -> None:
    def run(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return fleet(api_url, token, "artifact", *args, config=tmp_path / "config")

    wheel = tmp_path / "storefleet-1.4.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(200_000))
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    done = run(ADMIN, "upload", str(wheel), "--kind", "agent", "--target", "agent",
                 "--version", "1.4.0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == [sha, "agent", "1.4.0"]
    assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == wheel.read_bytes()

    fw = tmp_path / "ap9.bin"
    fw.write_bytes(b"\x00firmware" * 100)
    as_json = run(ADMIN, "upload", str(fw), "--kind", "firmware", "--target",
                    "firmware:esl/AP-9", "--version", "3.1.0", "--json")
    assert as_json.returncode == 0, as_json.stderr
    manifest = verify_document(json.loads(as_json.stdout), RELEASE.trusted())
    assert manifest["target"] == "firmware:esl/AP-9" and manifest["size"] == 900

    table = run(TECH, "ls")
    assert table.returncode == 0, table.stderr
    assert "firmware:esl/AP-9" in table.stdout and sha in table.stdout
    rows = json.loads(run(TECH, "ls", "--kind", "agent", "--json").stdout)
    assert [r["sha256"] for r in rows] == [sha]

    # After `fleet login`, no --api/--token: the saved ones are used.
    config = tmp_path / "config"
    login = fleet(None, None, "login", "--api", api_url, "--token", TECH, config=config)
    assert login.returncode == 0, login.stderr
    saved = fleet(None, None, "artifact", "ls", "--target", "firmware:esl/AP-9", "--json",
                  config=config)
    assert saved.returncode == 0, saved.stderr
    assert [r["version"] for r in json.loads(saved.stdout)] == ["3.1.0"]


def test_refusals_are_one_line_and_an_exit_code(api_url: str, tmp_path: Path) -> None:
    def run(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return fleet(api_url, token, "artifact", *args, config=tmp_path / "config")

    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"one")
    args = ["upload", str(fw), "--kind", "firmware", "--target", "firmware:esl/AP-9",
            "--version", "1"]
    assert run(ADMIN, *args).returncode == 0
    fw.write_bytes(b"two")
    conflict = run(ADMIN, *args)
    assert conflict.returncode == 1 and "409" in conflict.stderr
    assert "already artifact" in conflict.stderr and "Traceback" not in conflict.stderr
    tech = run(TECH, *args[:-1], "2")
    assert tech.returncode == 6 and "403" in tech.stderr
    bad_token = run("not-a-token-at-all", "ls")
    assert bad_token.returncode == 6 and "--token" in bad_token.stderr
    wrong = run(ADMIN, "upload", str(fw), "--kind", "model", "--target", "agent",
                  "--version", "3")
    assert wrong.returncode == 1 and "422" in wrong.stderr
    missing = run(ADMIN, "upload", str(tmp_path / "nope.bin"), "--kind", "agent",
                    "--target", "agent", "--version", "4")
    assert missing.returncode == 2 and "nope.bin" in missing.stderr
    down = fleet("http://127.0.0.1:1", ADMIN, "artifact", "ls", config=tmp_path / "config")
    assert down.returncode == 5 and "API running" in down.stderr
