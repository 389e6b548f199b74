"""Prometheus metrics of the cloud, registered on a registry passed in.

Nothing is registered on prometheus_client's global registry: each worker and each
app gets its own ``CollectorRegistry`` (or shares one it is given), so several can
run in one process (tests, the demo).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "storefleet_ingest_messages", "MQTT messages received, by uplink channel",
            ["channel"], registry=registry,
        )
        self.rejected = Counter(
            "storefleet_ingest_rejected", "Messages rejected (acknowledged, not stored)",
            ["reason"], registry=registry,
        )
        self.births_refused = Counter(
            "storefleet_ingest_births_refused",
            "Births not taken, each answered to its store with a refusal on ready",
            ["reason"], registry=registry,
        )
        self.events_stored = Counter(
            "storefleet_ingest_events_stored", "Events newly stored", registry=registry
        )
        self.events_stored_by_kind = Counter(
            "storefleet_ingest_events_stored_by_kind",
            "Events newly stored, by kind (sales, coupons issued and redeemed ...)",
            ["kind"], registry=registry,
        )
        self.event_delay = Histogram(
            "storefleet_ingest_event_delay_seconds",
            "From a live event's time on its box to its storing (ingest lag; replayed "
            "historical events are left out; box clocks are NTP-synchronised)",
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.events_acked = Counter(
            "storefleet_ingest_events_acked",
            "Events acknowledged to their store after commit (topics.ack, decision 0028)",
            registry=registry,
        )
        self.duplicates = Counter(
            "storefleet_ingest_duplicates", "Events already stored (redelivered or replayed)",
            registry=registry,
        )
        self.stale = Counter(
            "storefleet_ingest_stale", "Births, deaths or reported shadows older than stored",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "storefleet_ingest_batch_seconds", "Decode + commit time of one batch",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "storefleet_ingest_batch_size", "Messages per batch", registry=registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
        )
        self.connected = Gauge(
            "storefleet_ingest_connected", "1 while connected to the broker", registry=registry
        )
        self.db_errors = Counter(
            "storefleet_ingest_db_errors",
            "Batches not stored because the database failed (not acknowledged)",
            registry=registry,
        )
        self.drained = Counter(
            "storefleet_ingest_drained",
            "Messages stored and acknowledged after the unsubscribe of a clean stop",
            registry=registry,
        )
        self.stops = Counter(
            "storefleet_ingest_stops",
            "Clean stops, by how the session was handed over: idle (all drained), deadline "
            "(drain_s passed; the rest discarded, re-sent by the stores), not_drained "
            "(stopped while disconnected), session_kept (the broker could not be told)",
            ["outcome"], registry=registry,
        )
        self.connect_failures = Counter(
            "storefleet_ingest_connect_failures", "Broker connections lost or refused",
            registry=registry,
        )


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "storefleet_api_requests", "HTTP requests, by route template and status",
            ["method", "route", "status"], registry=registry,
        )
        self.rejected = Counter(
            "storefleet_api_rejected",
            "Requests refused (unauthenticated, forbidden, invalid, not found ...)",
            ["reason"], registry=registry,
        )
        self.published = Counter(
            "storefleet_api_published", "Messages published to stores, by kind",
            ["kind"], registry=registry,
        )
        self.publish_failures = Counter(
            "storefleet_api_publish_failures", "Messages that could not be published",
            ["kind"], registry=registry,
        )
