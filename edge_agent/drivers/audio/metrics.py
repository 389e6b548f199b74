"""Prometheus metrics of the audio driver, one set per registry (shared by all units)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.metrics import registry_scoped


class AudioMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outputs = Counter(
            "storefleet_audio_outputs", "output changes published to a unit",
            ["device_id"], registry=registry,
        )
        self.bad = Counter(
            "storefleet_audio_bad_messages", "rejected or dropped unit / presence messages",
            ["device_id", "reason"], registry=registry,
        )
        self.missing = Gauge(
            "storefleet_audio_missing_assets", "schedule tracks without a cached asset",
            ["device_id"], registry=registry,
        )
        self.asset_bytes = Counter(
            "storefleet_audio_asset_bytes_sent", "asset bytes sent to units in chunks",
            ["device_id"], registry=registry,
        )
        self.asset_failures = Counter(
            "storefleet_audio_asset_failures", "assets that did not reach a unit",
            ["device_id", "reason"], registry=registry,
        )
        self.version = Gauge(
            "storefleet_audio_schedule_version", "version of the schedule being played",
            ["device_id"], registry=registry,
        )


def audio_metrics(registry: CollectorRegistry) -> AudioMetrics:
    return registry_scoped(registry, "audio", AudioMetrics)
