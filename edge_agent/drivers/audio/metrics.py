"""Prometheus metrics of the audio driver, one set per registry (shared by all units)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge


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
        self.version = Gauge(
            "storefleet_audio_schedule_version", "version of the schedule being played",
            ["device_id"], registry=registry,
        )


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, AudioMetrics] = (
    weakref.WeakKeyDictionary()
)


def audio_metrics(registry: CollectorRegistry) -> AudioMetrics:
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = AudioMetrics(registry)
    return metrics
