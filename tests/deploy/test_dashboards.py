"""The Grafana dashboards' queries run against a real Prometheus scraping a real agent
and cloud, and every metric they use is one the code exports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from firmware_sim.store import StoreSimulator
from protocols import topics
from tests.integration.conftest import STORE, Stack, stack, wait_for
from tests.services import Prometheus

pytestmark = [pytest.mark.mosquitto, pytest.mark.prometheus]
__all__ = ["stack"]  # the integration fixture, used here too

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
PROMQL_FUNCS = {"sum", "min", "max", "rate", "increase", "histogram_quantile", "by", "le"}


def _panels() -> list[tuple[str, str, bool]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            must = bool(panel.get("storefleet", {}).get("must_have_data"))
            for target in panel["targets"]:
                out.append((f"{path.stem}: {panel['title']}", target["expr"], must))
    return out


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(storefleet_[a-z0-9_]+)", expr))
    # A histogram is queried through its _bucket series; the family is the base name.
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def _exported(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^# TYPE (storefleet_\w+) ", text, re.MULTILINE)} | {
        m.group(1) + "_total" for m in re.finditer(r"^# TYPE (storefleet_\w+) counter", text,
                                                    re.MULTILINE)
    }


def test_dashboards_exist_and_parse() -> None:
    panels = _panels()
    assert len(panels) >= 15
    assert len({title for title, _, _ in panels}) == len(panels)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_every_dashboard_query_runs_against_live_metrics(
    stack: Stack, tmp_path: Path
) -> None:
    stack.api(ingest=True).start()
    stack.agent().start()
    await wait_for(lambda: bool((stack.store_row() or {}).get("online")), timeout=40,
                   what="store online")
    api = f"127.0.0.1:{stack.api_port}"
    agent = f"127.0.0.1:{stack.agent_metrics_port}"
    prom = Prometheus(workdir=tmp_path / "prom", targets=[api, agent])
    prom.start()
    try:
        # Traffic for the panels: events, telemetry, a bad payload at each door, API calls.
        sim = StoreSimulator(bus_url=stack.local_broker.url, store_id=STORE, devices=3, rate=50,
                             max_events=400, tele_interval_s=0.5)
        run = asyncio.create_task(sim.run(asyncio.Event()))
        from tests.integration.test_bad_input import _publish_raw

        await asyncio.to_thread(_publish_raw, stack.cloud_broker,
                                [(topics.evt(STORE, "sale"), b"garbage")])
        await asyncio.to_thread(_publish_raw, stack.local_broker,
                                [(topics.local("sensor", "x1", "up", "evt"), b"garbage")])
        async with httpx.AsyncClient(base_url=f"http://{api}", timeout=10) as http:
            await http.get("/api/v1/stores")  # 401, counted as rejected
            await http.get("/api/v1/stores", headers={"Authorization": f"Bearer {stack.token}"})
            exported = _exported((await http.get("/metrics")).text)
            exported |= _exported((await http.get(f"http://{agent}/metrics")).text)
        await asyncio.wait_for(run, timeout=60)
        await asyncio.sleep(4)  # a few more scrapes so rate() has two points everywhere

        failures = []
        async with httpx.AsyncClient(base_url=prom.url, timeout=10) as http:
            for title, expr, must in _panels():
                missing = _metric_names(expr) - exported
                if missing:
                    failures.append(f"{title}: uses metrics nobody exports: {sorted(missing)}")
                    continue
                body = (await http.get("/api/v1/query", params={"query": expr})).json()
                if body.get("status") != "success":
                    failures.append(f"{title}: query failed: {body.get('error')}")
                elif must and not body["data"]["result"]:
                    failures.append(f"{title}: no data for {expr}")
        assert not failures, "\n".join(failures)
    finally:
        prom.stop()
