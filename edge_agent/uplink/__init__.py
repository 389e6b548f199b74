"""The uplink to the cloud: durable outbox, one MQTT session, publisher, telemetry."""
