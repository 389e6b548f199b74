"""Cloud ingest: MQTT uplink consumers that store what stores send, exactly once."""

from cloud.ingest.worker import IngestWorker, run_ingest

__all__ = ["IngestWorker", "run_ingest"]
