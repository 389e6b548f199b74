"""Prometheus metrics of one agent, on an explicit registry (no global state).

Several agents can run in one process (tests, the demo): each gets its own
``CollectorRegistry``. ``MetricsServer`` serves one registry over HTTP.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

logger = logging.getLogger(__name__)


T = TypeVar("T")

_SCOPED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = (
    weakref.WeakKeyDictionary())


def registry_scoped(registry: CollectorRegistry, name: str,
                    factory: Callable[[CollectorRegistry], T]) -> T:
    """One ``factory(registry)`` per (registry, name): several drivers share the agent's
    registry, and a collector name can be registered only once per registry. Weak keys:
    a registry's metrics go with it."""
    scoped = _SCOPED.setdefault(registry, {})
    if name not in scoped:
        scoped[name] = factory(registry)
    return cast(T, scoped[name])


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.uplink_connected = Gauge(
            "storefleet_uplink_connected", "1 while the uplink MQTT session is up", registry=r
        )
        self.cloud_ready = Gauge(
            "storefleet_uplink_cloud_ready",
            "1 once cloud ingest answered this session's birth (the outbox drains)",
            registry=r,
        )
        self.birth_refused = Counter(
            "storefleet_uplink_birth_refused_total",
            "births cloud ingest answered with a refusal, by its reason",
            ["reason"],
            registry=r,
        )
        self.births_unanswered = Counter(
            "storefleet_uplink_births_unanswered_total",
            "births the cloud did not answer in time, so published again (with backoff)",
            registry=r,
        )
        self.birth_refused_alarm = Gauge(
            "storefleet_uplink_birth_refused_alarm",
            "1 while cloud ingest refuses this store's birth (the outbox cannot drain)",
            registry=r,
        )
        self.birth_left_out = Gauge(
            "storefleet_birth_devices_left_out",
            "devices not named in the last birth: past its device or byte bound",
            registry=r,
        )
        self.uplink_connects = Counter(
            "storefleet_uplink_connects_total", "uplink sessions established", registry=r
        )
        self.uplink_connect_failures = Counter(
            "storefleet_uplink_connect_failures_total",
            "uplink connects that failed, by reason: tls (handshake or certificate), "
            "refused (by the broker: credentials, rights), network",
            ["reason"],
            registry=r,
        )
        self.bd_seq = Gauge("storefleet_agent_bd_seq", "bd_seq of the current session", registry=r)
        self.outbox_depth = Gauge(
            "storefleet_outbox_depth", "events waiting in the outbox", registry=r
        )
        self.outbox_bytes = Gauge(
            "storefleet_outbox_bytes", "payload bytes waiting in the outbox", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "storefleet_outbox_oldest_age_seconds", "age of the oldest outbox event", registry=r
        )
        self.outbox_dropped = Counter(
            "storefleet_outbox_dropped_total",
            "events dropped from the outbox by its bounds",
            ["reason"],
            registry=r,
        )
        self.outbox_refused = Counter(
            "storefleet_outbox_refused_total",
            "low-value events refused because business events fill the outbox (decision 0025)",
            ["kind", "reason"],
            registry=r,
        )
        self.outbox_headroom = Gauge(
            "storefleet_outbox_headroom_seconds",
            "seconds until business events alone fill the outbox's byte bound at their "
            "current write rate (a week at most); under an hour raises outbox_headroom_low",
            registry=r,
        )
        self.outbox_alarm = Gauge(
            "storefleet_outbox_alarm",
            "1 while an outbox alarm is raised (outbox_headroom_low, outbox_over_bound)",
            ["alarm"],
            registry=r,
        )
        self.events_enqueued = Counter(
            "storefleet_events_enqueued_total", "events written to the outbox", registry=r
        )
        self.events_published = Counter(
            "storefleet_events_published_total",
            "events acknowledged by the uplink broker",
            registry=r,
        )
        self.events_cloud_acked = Counter(
            "storefleet_events_cloud_acked_total",
            "events cloud ingest acknowledged as committed (then deleted from the outbox)",
            registry=r,
        )
        self.events_resent = Counter(
            "storefleet_uplink_resent_total",
            "events published again: 'session' (a new session or run starts over from the "
            "oldest unacknowledged event), 'timeout' (no cloud ack in time), 'ready' "
            "(the cloud answered a birth again, e.g. ingest reconnected)",
            ["reason"],
            registry=r,
        )
        self.cloud_unacked_age = Gauge(
            "storefleet_uplink_unacked_oldest_age_seconds",
            "age of the oldest event the cloud has not acknowledged as committed: the "
            "honest backlog (with no cloud ingest, not yet acknowledged by the broker)",
            registry=r,
        )
        self.events_duplicate = Counter(
            "storefleet_events_duplicate_total",
            "local events ignored because their id is already in the outbox",
            registry=r,
        )
        self.bad_payloads = Counter(
            "storefleet_agent_bad_payloads_total",
            "rejected messages",
            ["source", "reason"],
            registry=r,
        )
        self.telemetry_forwarded = Counter(
            "storefleet_telemetry_forwarded_total",
            "local telemetry messages forwarded to the cloud",
            registry=r,
        )
        self.telemetry_dropped = Counter(
            "storefleet_telemetry_dropped_total",
            "local telemetry messages dropped (offline or buffer full)",
            ["reason"],
            registry=r,
        )
        self.local_dropped = Counter(
            "storefleet_local_messages_dropped_total",
            "local messages not taken in because the agent's queue was full",
            ["qos"],
            registry=r,
        )
        self.devices_online = Gauge(
            "storefleet_local_devices_online", "devices online on the local bus", registry=r
        )
        self.commands = Counter(
            "storefleet_agent_commands_total", "commands handled", ["name", "status"], registry=r
        )
        self.shadow_version = Gauge(
            "storefleet_agent_shadow_version", "applied desired-shadow version", registry=r
        )

    def bind_outbox(
        self,
        *,
        depth: Callable[[], float],
        size: Callable[[], float],
        oldest_age_s: Callable[[], float],
        headroom_s: Callable[[], float],
    ) -> None:
        """Gauges read at scrape time from the outbox's in-memory counters (no I/O)."""
        self.outbox_depth.set_function(depth)
        self.outbox_bytes.set_function(size)
        self.outbox_oldest_age.set_function(oldest_age_s)
        # Every event not yet acknowledged by the cloud is still in the outbox (decision
        # 0028), so its oldest row is the oldest unacknowledged event.
        self.cloud_unacked_age.set_function(oldest_age_s)
        self.outbox_headroom.set_function(headroom_s)


class MetricsServer:
    """``/metrics`` for one registry on a background HTTP thread (prometheus_client's)."""

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._registry
        )
        logger.info("metrics on http://%s:%s/metrics", self._host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
