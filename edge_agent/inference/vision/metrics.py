"""Prometheus metrics of the vision runtime, on the registry it is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class VisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.frames = Counter(
            "storefleet_vision_frames_total", "frames taken in", ["kind"], registry=r
        )
        self.bad_frames = Counter(
            "storefleet_vision_bad_frames_total",
            "frames refused: bad snapshot envelope, undecodable JPEG, bad shape",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "storefleet_vision_frames_dropped_total",
            "frames dropped unclassified because the queue was full (oldest first)",
            registry=r,
        )
        self.classified = Counter(
            "storefleet_vision_classified_total", "frames classified", ["category"], registry=r
        )
        self.low_confidence = Counter(
            "storefleet_vision_low_confidence_total",
            "classifications below the confidence floor (no CategorySeen emitted)",
            registry=r,
        )
        self.seen_dropped = Counter(
            "storefleet_vision_seen_dropped_total",
            "CategorySeen messages a slow subscriber did not take in time (oldest dropped)",
            registry=r,
        )
        self.errors = Counter(
            "storefleet_vision_errors_total",
            "failures outside a frame: inference runtime, a CategorySeen consumer",
            ["where"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "storefleet_vision_queue_depth", "frames waiting for the classifier", registry=r
        )
        # Buckets around the ~0.5 ms a 48 px frame takes on one core, up to a stalled box.
        self.batch_seconds = Histogram(
            "storefleet_vision_batch_seconds",
            "time to decode, preprocess and classify one batch",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
