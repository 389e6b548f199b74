"""Regenerate the Grafana dashboards in ``dashboards/`` from the panel lists below.

    python deploy/grafana/build.py

Each panel is (title, PromQL, unit, must_have_data). ``tests/deploy/test_dashboards.py``
runs every query against a real Prometheus scraping a running agent and cloud, and
checks that every metric a panel uses is one the code exports.
"""

from __future__ import annotations

import json
from pathlib import Path

STORES = [
    ("Uplink connected (per store box)", "min by (instance) (storefleet_uplink_connected)",
     "none", True),
    ("Outbox depth", "max by (instance) (storefleet_outbox_depth)", "none", True),
    ("Oldest event in outbox", "max by (instance) (storefleet_outbox_oldest_age_seconds)",
     "s", True),
    # decisions 0028/0029: the honest ingest backlog. Every event ingest has not committed
    # is still in its store's outbox, wherever the broker holds it (a stopped or crashed
    # worker's session included); a line above the 30 s ack timeout means events wait.
    ("Oldest event not yet committed by the cloud (ingest backlog)",
     "max by (instance) (storefleet_uplink_unacked_oldest_age_seconds)", "s", True),
    ("Events published / s",
     "sum by (instance) (rate(storefleet_events_published_total[1m]))", "ops", True),
    ("Events enqueued / s",
     "sum by (instance) (rate(storefleet_events_enqueued_total[1m]))", "ops", True),
    ("Bad payloads / s by reason",
     "sum by (source, reason) (rate(storefleet_agent_bad_payloads_total[5m]))", "ops", True),
    ("Local devices online", "sum by (instance) (storefleet_local_devices_online)", "none", True),
    ("Events dropped from outbox (1 h)",
     "sum by (instance, reason) (increase(storefleet_outbox_dropped_total[1h]))", "none", False),
    # decision 0025: business events are never dropped; watch their headroom instead
    ("Outbox headroom for business events",
     "min by (instance) (storefleet_outbox_headroom_seconds)", "s", True),
    ("Outbox alarms", "max by (instance, alarm) (storefleet_outbox_alarm)", "none", True),
    ("Low-value events refused by a full outbox (1 h)",
     "sum by (instance, kind) (increase(storefleet_outbox_refused_total[1h]))", "none", False),
    ("Telemetry forwarded / s",
     "sum by (instance) (rate(storefleet_telemetry_forwarded_total[1m]))", "ops", True),
    ("Telemetry dropped / s",
     "sum by (instance, reason) (rate(storefleet_telemetry_dropped_total[5m]))", "ops", False),
    ("Uplink reconnects (1 h)",
     "sum by (instance) (increase(storefleet_uplink_connects_total[1h]))", "none", True),
]

CLOUD = [
    ("Ingest messages / s by channel",
     "sum by (channel) (rate(storefleet_ingest_messages_total[1m]))", "ops", True),
    ("Events stored / s", "sum(rate(storefleet_ingest_events_stored_total[1m]))", "ops", True),
    ("Duplicates suppressed / s", "sum(rate(storefleet_ingest_duplicates_total[5m]))", "ops",
     True),
    ("Rejected uplink messages / s by reason",
     "sum by (reason) (rate(storefleet_ingest_rejected_total[5m]))", "ops", True),
    ("Ingest batch commit p99",
     "histogram_quantile(0.99, sum by (le) (rate(storefleet_ingest_batch_seconds_bucket[5m])))",
     "s", True),
    ("Ingest workers connected", "sum(storefleet_ingest_connected)", "none", True),
    # decision 0029: a scale-down drains and ends the worker's session; 'deadline',
    # 'not_drained' or 'session_kept' mean the stores re-send what it held
    ("Ingest clean stops (1 h) by outcome",
     "sum by (outcome) (increase(storefleet_ingest_stops_total[1h]))", "none", False),
    ("Messages drained by clean stops (1 h)",
     "sum(increase(storefleet_ingest_drained_total[1h]))", "none", False),
    ("Ingest database errors / s", "sum(rate(storefleet_ingest_db_errors_total[5m]))", "ops",
     True),
    # decision 0054: ingest lag, from a live event's time on its box to its storing
    ("Ingest lag p99 (live events, box time to stored)",
     "histogram_quantile(0.99, sum by (le) "
     "(rate(storefleet_ingest_event_delay_seconds_bucket[5m])))", "s", True),
    ("Post-commit hook errors / s by hook",
     "sum by (hook) (rate(storefleet_ingest_hook_errors_total[5m]))", "ops", False),
    ("API 5xx responses / s by route",
     "sum by (route) (rate(storefleet_api_requests_total{status=~\"5..\"}[5m]))", "reqps",
     False),
    ("API requests / s by status",
     "sum by (status) (rate(storefleet_api_requests_total[1m]))", "reqps", True),
    ("API rejected requests / s by reason",
     "sum by (reason) (rate(storefleet_api_rejected_total[5m]))", "reqps", True),
    ("Messages published to stores / s",
     "sum by (kind) (rate(storefleet_api_published_total[5m]))", "ops", False),
    # the sales audit (decision 0021): a sale re-priced to another total, charged other
    # money than it recorded, or not re-priceable at all is a finding for HQ
    ("Sales audit: mismatches (1 h) by reason",
     "sum by (reason) (increase(storefleet_reprice_mismatches_total[1h]))", "none", False),
    ("Sales audit: unaudited sales (1 h) by reason",
     "sum by (reason) (increase(storefleet_sales_unaudited_total[1h]))", "none", False),
]

# HQ's dashboards (decision 0054) read only the cloud's fleet gauges and counters: no
# store box is scraped. Every API replica exports the same fleet gauges, so a figure is
# the max over instances (max by its labels), then summed over regions or families.
_DEVICES = "max by (family, region, state) (storefleet_fleet_devices)"

CHAIN = [
    ("Stores online",
     'sum(max by (region) (storefleet_fleet_stores{state="online"}))', "none", True),
    ("Stores offline",
     'sum(max by (region) (storefleet_fleet_stores{state="offline"}))', "none", True),
    ("Stores offline by region", 'max by (region) (storefleet_fleet_stores{state="offline"})',
     "none", True),
    ("Share of stores online by region",
     'max by (region) (storefleet_fleet_stores{state="online"}) / '
     "sum by (region) (max by (region, state) (storefleet_fleet_stores))", "percentunit", True),
    ("Devices online by family",
     'sum by (family) (max by (family, region) (storefleet_fleet_devices{state="online"}))',
     "none", True),
    ("Active device alarms by kind",
     "sum by (kind) (max by (family, kind) (storefleet_fleet_device_alarms))", "none", False),
    ("Events waiting in store outboxes by region",
     "max by (region) (storefleet_fleet_outbox_events)", "none", True),
    ("Oldest event waiting in a store outbox by region",
     "max by (region) (storefleet_fleet_outbox_oldest_age_seconds)", "s", True),
    ("Stores behind (oldest outbox event over 60 s) by region",
     "max by (region) (storefleet_fleet_outbox_stores_behind)", "none", True),
    ("Content convergence: stores by state", "max by (state) (storefleet_content_stores)",
     "none", False),
    ("Shelf labels by state (stale: not confirmed in time)",
     "max by (state) (storefleet_content_labels)", "none", False),
    ("Rollouts by state", "max by (state) (storefleet_fleet_rollouts)", "none", False),
    ("Targets of running rollouts by state",
     "max by (state) (storefleet_fleet_rollout_targets)", "none", False),
    ("Chain events stored / s by kind",
     "sum by (kind) (rate(storefleet_ingest_events_stored_by_kind_total[1m]))", "ops", True),
]

DEVICES = [
    ("Devices by family and state", f"sum by (family, state) ({_DEVICES})", "none", True),
    ("Devices offline by region",
     'sum by (region) (max by (family, region) (storefleet_fleet_devices{state="offline"}))',
     "none", True),
    ("Share of devices offline by family",
     'sum by (family) (max by (family, region) (storefleet_fleet_devices{state="offline"})) / '
     f"sum by (family) ({_DEVICES})", "percentunit", True),
    ("Active alarms by family and kind",
     "max by (family, kind) (storefleet_fleet_device_alarms)", "none", False),
    ("Device alarm events stored / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="device_alarm"}[5m]))',
     "ops", False),
    ("Fleet gauge computation time", "max(storefleet_fleet_collect_seconds)", "s", True),
    ("Fleet gauge computations failed (1 h)",
     "sum(increase(storefleet_fleet_collect_errors_total[1h]))", "none", True),
]

RETAIL = [
    ("Sales stored / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="sale"}[5m]))', "ops",
     False),
    ("Refunds stored / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="refund"}[5m]))', "ops",
     False),
    ("Vends stored / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="vend"}[5m]))', "ops",
     False),
    ("Coupons issued in stores / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="coupon_issued"}[5m]))',
     "ops", False),
    ("Coupons redeemed in stores / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="coupon_redeemed"}[5m]))',
     "ops", False),
    ("Coupons issued by loyalty campaigns / s by trigger",
     "sum by (trigger) (rate(storefleet_loyalty_coupons_issued_total[5m]))", "ops", False),
    ("Coupon redemptions / s by result",
     "sum by (result) (rate(storefleet_loyalty_coupon_redemptions_total[5m]))", "ops", False),
    ("Sales re-priced by the cloud / s", "sum(rate(storefleet_repriced_sales_total[5m]))",
     "ops", False),
    ("Online orders placed / s by fulfilment",
     "sum by (fulfilment) (rate(storefleet_orders_placed_total[5m]))", "ops", False),
    ("Member visits stored / s",
     'sum(rate(storefleet_ingest_events_stored_by_kind_total{kind="member_visit"}[5m]))',
     "ops", False),
]


def dashboard(uid: str, title: str, panels: list[tuple[str, str, str, bool]]) -> dict[str, object]:
    out = []
    for i, (name, expr, unit, must) in enumerate(panels):
        out.append({
            "id": i + 1,
            "type": "timeseries",
            "title": name,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": "__auto"}],
            "storefleet": {"must_have_data": must},
        })
    return {
        "uid": uid,
        "title": title,
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["storefleet"],
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus",
        }]},
        "panels": out,
    }


def main() -> None:
    here = Path(__file__).parent / "dashboards"
    here.mkdir(exist_ok=True)
    for uid, title, panels in (
        ("storefleet-stores", "storefleet — store detail (a store box's own metrics)", STORES),
        ("storefleet-cloud", "storefleet — cloud ingest and API", CLOUD),
        ("storefleet-chain", "storefleet — chain overview", CHAIN),
        ("storefleet-devices", "storefleet — devices and alarms", DEVICES),
        ("storefleet-retail", "storefleet — retail: sales and coupons", RETAIL),
    ):
        text = json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
        (here / f"{uid}.json").write_text(text)


if __name__ == "__main__":
    main()
