"""The alert rules in deploy/prometheus/ (decision 0054): valid for promtool, each alert
fires on its series and stays quiet below its threshold, and StoreOffline fires on a
real Prometheus scraping a real cloud when a real store box goes offline."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import STORE, Stack, stack, wait_for
from tests.services import Prometheus, unavailable

__all__ = ["stack"]  # the integration fixture, used here too

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"


def _promtool() -> str:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        unavailable("promtool is not installed (apt-get install prometheus)")
    return binary


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_rules_and_config_pass_promtool() -> None:
    res = _run("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run("check", "config", str(DEPLOY / "prometheus.yml"))  # names alerts.yml
    assert res.returncode == 0, res.stdout + res.stderr
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"StoreOffline", "OutboxGrowing", "DevicesUnhealthy", "LabelsStale",
            "IngestLag"} <= names


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    # two API replicas export the same fleet gauges: the rules must not double them
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _replicas(name: str, values: str, **labels: str) -> list[dict[str, str]]:
    return [_series(name, values, instance=i, **labels) for i in ("api-1", "api-2")]


def _alert(at: str, name: str, labels: dict[str, str] | None = None,
           **annotations: str) -> dict[str, Any]:
    expected = [] if labels is None else [{"exp_labels": labels,
                                            "exp_annotations": annotations}]
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def _cases() -> list[dict[str, Any]]:
    """One promtool test per alert: its series, then when it must (not) fire."""
    stores, outbox = "storefleet_fleet_stores", "storefleet_fleet_outbox_events"
    return [
        {"input_series": [
            *_replicas(stores, "0 0 1x30", region="north", state="offline"),
            *_replicas(stores, "20x32", region="north", state="online")],
         "alert_rule_test": [
            _alert("5m", "StoreOffline"),  # pending: offline for 3 of its 10 minutes
            _alert("15m", "StoreOffline", {"severity": "warning", "region": "north"},
                   summary="1 store(s) offline in region north",
                   description="fleet stores --region north --offline lists them."),
            _alert("15m", "StoresOfflineInRegion")]},  # 1 of 21: one store's trouble
        {"input_series": [
            *_replicas(stores, "5x20", region="south", state="offline"),
            *_replicas(stores, "5x20", region="south", state="online")],
         "alert_rule_test": [
            _alert("10m", "StoresOfflineInRegion", {"severity": "critical", "region": "south"},
                   summary="50% of region south's stores are offline",
                   description="Many stores at once: a network, broker or power problem, "
                               "not a store's.")]},
        {"input_series": [
            *_replicas("storefleet_fleet_outbox_stores_behind", "2x60", region="east"),
            *_replicas(outbox, "100+50x60", region="east"),
            *_replicas("storefleet_fleet_outbox_stores_behind", "2x60", region="west"),
            *_replicas(outbox, "3000-50x60", region="west")],  # draining: not growing
         "alert_rule_test": [
            _alert("40m", "OutboxGrowing", {"severity": "warning", "region": "east"},
                   summary="Store outboxes in region east are growing",
                   description="2 online store(s) hold events the cloud has not "
                               "acknowledged for over a minute; see the chain overview's "
                               "outbox panels and IngestLag.")]},
        {"input_series": _replicas("storefleet_fleet_outbox_oldest_age_seconds", "0+120x40",
                                   region="east"),
         "alert_rule_test": [
            _alert("16m", "OutboxEventsOld"),  # over 30 min old for 1 of its 5 minutes
            _alert("30m", "OutboxEventsOld", {"severity": "critical", "region": "east"},
                   summary="An online store in region east holds an event 1h 0m 0s old",
                   description="Its events are not reaching the cloud while it is "
                               "connected: ingest, the broker, or a refused birth.")]},
        {"input_series": [
            *_replicas("storefleet_fleet_devices", "10x30", family="esl", region="north",
                       state="offline"),
            *_replicas("storefleet_fleet_devices", "90x30", family="esl", region="north",
                       state="online"),
            *_replicas("storefleet_fleet_devices", "1x30", family="printer", region="north",
                       state="offline"),
            *_replicas("storefleet_fleet_devices", "99x30", family="printer", region="north",
                       state="online")],
         "alert_rule_test": [
            _alert("20m", "DevicesUnhealthy", {"severity": "warning", "family": "esl"},
                   summary="10% of esl devices are offline")]},
        {"input_series": _replicas("storefleet_fleet_device_alarms", "3x40", family="printer",
                                   kind="paper_low"),
         "alert_rule_test": [
            _alert("40m", "DeviceAlarmsActive",
                   {"severity": "info", "family": "printer", "kind": "paper_low"},
                   summary="3 printer device(s) raise paper_low")]},
        {"input_series": [
            *_replicas("storefleet_content_labels", "7x30", state="stale"),
            *_replicas("storefleet_content_labels", "900x30", state="current")],
         "alert_rule_test": [
            _alert("20m", "LabelsStale", {"severity": "warning"},
                   summary="7 shelf label(s) show a price the till does not charge",
                   description="fleet content status lists the stores; the ESL base station "
                               "or the labels' batteries.")]},
        {"input_series": [  # nine in ten live events take one to two minutes
            _series("storefleet_ingest_event_delay_seconds_bucket", "0+10x30", le="60"),
            _series("storefleet_ingest_event_delay_seconds_bucket", "0+100x30", le="120"),
            _series("storefleet_ingest_event_delay_seconds_bucket", "0+100x30", le="+Inf")],
         "alert_rule_test": [
            _alert("20m", "IngestLag", {"severity": "warning"},
                   summary="1 % of live events take over 1m 59s from box to database")]},
        {"input_series": [  # all quick: no alert
            _series("storefleet_ingest_event_delay_seconds_bucket", "0+100x30", le="1"),
            _series("storefleet_ingest_event_delay_seconds_bucket", "0+100x30", le="+Inf")],
         "alert_rule_test": [_alert("20m", "IngestLag")]},
        {"input_series": [_series("storefleet_ingest_connected", "0x20", instance="api-1")],
         "alert_rule_test": [
            _alert("10m", "IngestDown", {"severity": "critical"},
                   summary="No ingest worker is connected to the broker: store events wait "
                           "in outboxes")]},
        {"input_series": _replicas("storefleet_fleet_collect_errors_total", "0+1x40"),
         "alert_rule_test": [
            _alert("35m", "FleetGaugesFailing", {"severity": "warning"},
                   summary="The cloud cannot compute the fleet gauges: the dashboards show "
                           "old figures")]},
    ]


def test_every_alert_fires_on_its_series_and_not_below_its_threshold(tmp_path: Path) -> None:
    cases = _cases()
    tested = {t["alertname"] for case in cases for t in case["alert_rule_test"]}
    declared = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"]}
    assert tested == declared, declared ^ tested
    doc = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", **case} for case in cases]}
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    res = _run("test", "rules", str(spec))
    assert res.returncode == 0, res.stdout + res.stderr


@dataclass
class RulesPrometheus(Prometheus):
    """``tests.services.Prometheus`` that also evaluates a rule file every second."""

    rules: Path | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            unavailable("prometheus is not installed (apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "prometheus.yml"
        conf.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.rules)] if self.rules else [],
            "scrape_configs": [{"job_name": "storefleet",
                                "static_configs": [{"targets": self.targets}]}]}))
        with open(self.workdir / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={conf}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=log)
        self.wait_ready()


@pytest.mark.mosquitto
@pytest.mark.prometheus
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_store_offline_fires_when_a_real_store_goes_offline(
    stack: Stack, tmp_path: Path
) -> None:
    stack.api(ingest=True).start()
    agent = stack.agent(keepalive_s=2)  # its broker's will is the death, 3 s after it dies
    conf = stack.tmp / "agent.toml"  # written by stack.agent(): report the outbox each 0.5 s
    conf.write_text(conf.read_text().replace("[agent]\n", "[agent]\nhealth_interval_s = 0.5\n"))
    agent.start()
    await wait_for(lambda: bool((stack.store_row() or {}).get("online")), timeout=40,
                   what="store online")
    api = f"127.0.0.1:{stack.api_port}"
    async with httpx.AsyncClient(base_url=f"http://{api}", timeout=10, headers={
            "Authorization": f"Bearer {stack.token}"}) as http:
        r = await http.put(f"/api/v1/regions/north/stores/{STORE}")
        assert r.status_code == 200, r.text
        exported = set(re.findall(r"^# TYPE (storefleet_\w+) ", (await http.get("/metrics")).text,
                                  re.MULTILINE))
    # The rules as shipped, only their waits shortened to one evaluation.
    rules = tmp_path / "alerts.yml"
    rules.write_text(re.sub(r"for: \d+m", "for: 1s", RULES.read_text()))
    used = set(re.findall(r"\b(storefleet_[a-z_]+)", RULES.read_text()))
    used = {re.sub(r"_bucket$", "", n) for n in used}  # a histogram is typed by its base
    assert used <= exported, f"rules use metrics the cloud does not export: {used - exported}"
    prom = RulesPrometheus(workdir=tmp_path / "prom", targets=[api], rules=rules)
    prom.start()
    try:
        async with httpx.AsyncClient(base_url=prom.url, timeout=10) as http:
            async def value(expr: str) -> float | None:
                body = (await http.get("/api/v1/query", params={"query": expr})).json()
                result = body["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            async def firing() -> list[dict[str, Any]]:
                body = (await http.get("/api/v1/alerts")).json()
                return [a for a in body["data"]["alerts"]
                        if a["labels"]["alertname"] == "StoreOffline" and a["state"] == "firing"]

            async def until(check: Callable[[], Awaitable[object]], what: str,
                            timeout: float = 45) -> None:
                for _ in range(int(timeout / 0.5)):
                    if await check():
                        return
                    await asyncio.sleep(0.5)
                raise AssertionError(f"timed out waiting for {what}")

            async def online_in_north() -> bool:
                return await value('storefleet_fleet_stores{region="north",state="online"}') == 1

            async def outbox_reported() -> bool:
                return await value('storefleet_fleet_outbox_stores_reporting{region="north"}') == 1

            # The fleet gauges see the store online in its region, and its box's outbox.
            await until(online_in_north, "the store online in north")
            await until(outbox_reported, "the box's outbox report")
            await asyncio.sleep(3)  # several evaluations with the store online
            assert await firing() == []
            agent.kill9()  # the store loses power
            await until(firing, "StoreOffline firing", timeout=60)
            alert = (await firing())[0]
            assert alert["labels"]["region"] == "north"
            assert alert["annotations"]["summary"] == "1 store(s) offline in region north"
    finally:
        prom.stop()

