"""storefleet: the distribution's command-line entry point and the embedded demo.

This package is the one place that composes the others (cloud, edge_agent,
firmware_sim) into a single process for ``storefleet demo``. Its ``storefleet.mqtt``
is the other way round: shared MQTT plumbing that the agent and the cloud import
(it imports only ``protocols`` and aiomqtt; decision 0034). Keep this file light.
"""

__version__ = "0.1.0"
