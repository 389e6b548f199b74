"""``fleet rollout create|ls|status|pause|resume|abort`` through the console script
against the real cloud API served by uvicorn (decision 0040; the offers go to the
API's in-memory publisher: the rollout itself is proven in
tests/integration/test_rollouts.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cloud.conftest import ADMIN, TECH
from tests.fleet.test_fleet_artifacts import api_url as api_url  # the uvicorn fixture
from tests.fleet.test_fleet_artifacts import fleet


def test_create_ls_status_pause_resume_abort(api_url: str, tmp_path: Path) -> None:
    def run(token: str, *args: str) -> tuple[int, str, str]:
        done = fleet(api_url, token, *args, config=tmp_path / "config")
        return done.returncode, done.stdout, done.stderr

    fw = tmp_path / "cab.bin"
    fw.write_bytes(os.urandom(5000))
    code, out, err = run(ADMIN, "artifact", "upload", str(fw), "--kind", "firmware",
                         "--target", "firmware:vending/cab-8", "--version", "2.0.0", "--json")
    assert code == 0, err
    sha = json.loads(out)["payload"]["sha256"]
    code, out, err = run(ADMIN, "rollout", "create", sha, "--device", "vend-1",
                         "--store", "s1", "--store", "s2", "--store", "s3",
                         "--canary", "1", "--wave-size", "2", "--json")
    assert code == 0, err
    created = json.loads(out)
    rid = created["id"]
    assert [w["size"] for w in created["waves"]] == [1, 2]

    code, out, err = run(TECH, "rollout", "status", rid)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"rollout {rid}: running")
    assert lines[1].startswith("> wave 0") and "1 offered" in lines[1]
    assert lines[2].startswith("  wave 1") and "0/2" in lines[2] and "2 waiting" in lines[2]

    code, out, err = run(TECH, "rollout", "ls")
    assert code == 0 and rid[:8] in out and "running" in out, err
    assert run(TECH, "rollout", "pause", rid)[0] == 6  # hq-admin only
    code, out, err = run(ADMIN, "rollout", "pause", rid)
    assert code == 0 and ": paused" in out.splitlines()[0], err
    code, out, err = run(ADMIN, "rollout", "pause", rid)
    assert code == 1 and "is paused" in err  # 409, one line
    assert run(ADMIN, "rollout", "resume", rid)[0] == 0
    code, out, err = run(ADMIN, "rollout", "abort", rid, "--json")
    assert code == 0 and json.loads(out)["state"] == "aborted", err
    code, out, err = run(ADMIN, "rollout", "status", "no-such-rollout")
    assert code == 7, err
