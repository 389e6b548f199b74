"""Fuzz the API from its own OpenAPI document: no request may get a 5xx, and every
response must be what the document declares (status, content type, schema).

Schemathesis (``st run``, in a subprocess) generates requests for every operation from
``/openapi.json`` of the real app served by uvicorn on 127.0.0.1, on PostgreSQL: the
database whose limits (BIGINT, no NUL in text, UTF-8 only) turned bad input into 500s
(issue 12 item 7). Examples are bounded so the run takes about a minute on a 2-core box;
the seed is fixed so a failure reproduces, and ``STOREFLEET_FUZZ_SEED`` /
``STOREFLEET_FUZZ_EXAMPLES`` explore further by hand.
"""

from __future__ import annotations

import os
import re
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
from cloud.publish import MemoryPublisher
from edge_agent.cartscreen.server import EmbeddedServer
from tests.cloud.conftest import ADMIN, make_settings
from tests.services import Postgres, free_port

pytestmark = pytest.mark.postgres

HOST = "127.0.0.1"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
# 25 cases per operation, one worker: about 50 s for the ~55 operations here.
MAX_EXAMPLES = int(os.environ.get("STOREFLEET_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("STOREFLEET_FUZZ_SEED", "20261202"))
RUN_TIMEOUT_S = 240  # well past a normal run; a hang fails instead of blocking CI


@pytest.fixture
def api_url(postgres_server: Postgres, tmp_path: Path) -> Iterator[str]:
    db_url = postgres_server.create_database(f"sf_fuzz_{tmp_path.name[-8:].lower()}")
    # A hash key, a member code secret and an order payment secret, so member and
    # payment routes answer as configured ones do (without them they answer a
    # documented 503, which not_a_server_error would count).
    settings = make_settings(db_url, member_hash_key="fuzz-member-hash-key-0123",
                             member_code_secret="fuzz-member-code-secret-0123",
                             order_payment_secret="fuzz-order-payment-secret-0123",
                             artifact_dir=str(tmp_path / "artifacts"))
    app = create_app(settings, registry=CollectorRegistry(), publisher=MemoryPublisher())
    port = free_port()
    server = EmbeddedServer(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    # schemathesis is a blocking client in another process: the server gets its own
    # thread and event loop, as it would its own process.
    thread = threading.Thread(target=server.run, name="fuzz-api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"


def test_no_request_gets_a_server_error_or_an_undeclared_response(
    api_url: str, tmp_path: Path,
) -> None:
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{api_url}/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN}",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--generation-database", "none", "--no-color",
        "--continue-on-failure",  # every failure of an operation, not only its first
    ]
    # cwd: schemathesis may write reports; nothing lands in the repository.
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-20_000:]
    # It really ran: every operation tested (a schema that failed to load also exits 1).
    # It really ran: every operation tested, and cases generated for them.
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested, out[-3_000:]
    assert int(tested[1]) == int(selected[2]) >= 50, out[-3_000:]
    assert re.search(r"\d+ generated, \d+ passed", out), out[-3_000:]
