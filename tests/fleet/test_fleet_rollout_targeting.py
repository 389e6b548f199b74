"""``fleet rollout create --region/--group/--model``, deferred counts in ``rollout
status`` and ``ls``, and the maintenance window in ``fleet store show`` (decision 0043),
through the console script against the cloud under uvicorn. The stores' births and a
box's ``deferred`` report go through ingest's own code on the same database."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from cloud.db.engine import make_engine, make_session_factory, writer
from cloud.rollouts.service import RolloutHook, RolloutMetrics
from protocols.messages import Event
from tests.cloud.conftest import ADMIN, TECH, auth
from tests.cloud.rollouts.test_targeting import CAB8, seed
from tests.fleet.test_fleet_artifacts import api_url as api_url  # the uvicorn fixture
from tests.fleet.test_fleet_artifacts import fleet


def test_create_by_region_group_and_model_status_with_deferred_and_store_window(
    api_url: str, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"  # the fixture's database
    seed(db_url)  # s1: vend-1 cab-8; s2: vend-2 cab-8; s3: a cab-9; s4: a printer

    def run(token: str, *args: str) -> tuple[int, str, str]:
        done = fleet(api_url, token, *args, config=tmp_path / "config")
        return done.returncode, done.stdout, done.stderr

    with httpx.Client(base_url=api_url, headers=auth(ADMIN)) as http:
        for path in ("/api/v1/regions/north/stores/s3", "/api/v1/groups/pilot/stores/s1"):
            assert http.put(path).status_code == 200
        r = http.put("/api/v1/stores/s1/maintenance",
                     json={"timezone": "Europe/Berlin", "window": "22:00-02:00"})
        assert r.status_code == 200, r.text

    code, out, err = run(ADMIN, "rollout", "create", CAB8, "--model", "cab-8", "--canary",
                         "2", "--json")
    assert code == 0, err
    by_model = json.loads(out)
    assert [(t["store_id"], t["device"]) for t in by_model["targets"]] == [
        ("s1", "vend-1"), ("s2", "vend-2")]
    code, out, err = run(ADMIN, "rollout", "create", CAB8, "--device", "vend-1",
                         "--region", "north", "--group", "pilot", "--store", "s2")
    assert code == 0, err
    assert out.splitlines()[-1] == "  3 store(s) from stores s2; regions north; groups pilot"
    code, out, err = run(ADMIN, "rollout", "create", CAB8, "--model", "cab-9")
    assert code == 1 and "is for model 'cab-8', not 'cab-9'" in err, (code, err)
    code, out, err = run(ADMIN, "rollout", "create", CAB8, "--device", "vend-1")
    assert code != 0 and "give stores, regions, groups or models" in err, (code, err)

    # s2's cabinet is mid-vend: its box reports deferred (ingest's hook, as in the cloud)
    engine = make_engine(db_url)
    try:
        with make_session_factory(writer(engine)).begin() as session:
            RolloutHook(RolloutMetrics(CollectorRegistry()))(session, Event(
                id="d1", kind="rollout_status", store_id="s2", device_id="vend-2", seq=1,
                ts=1, data={"rollout_id": by_model["id"], "sha256": CAB8, "device": "vend-2",
                            "step": "deferred", "detail": "a vend session is in progress"}),
                1)
    finally:
        engine.dispose()
    code, out, err = run(TECH, "rollout", "status", by_model["id"])
    assert code == 0, err
    lines = out.splitlines()
    assert "-> each store's device" in lines[0]
    assert "1 deferred" in lines[1]  # the wave's counts by state
    assert lines[-1] == "  2 store(s) from models cab-8, 1 deferred (busy on their box)"
    code, out, err = run(TECH, "rollout", "ls", "--json")
    assert code == 0, err
    assert {r["id"]: r["deferred"] for r in json.loads(out)}[by_model["id"]] == 1

    code, out, err = run(TECH, "store", "show", "s1")
    assert code == 0, err
    assert "rollouts are offered 22:00-02:00 Europe/Berlin local time only" in out
    code, out, err = run(TECH, "store", "show", "s2")
    assert code == 0 and "no maintenance window: rollouts are offered at once" in out, err
