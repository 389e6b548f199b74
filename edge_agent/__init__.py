"""storefleet edge agent: the store box's asyncio service (``storefleet edge run``).

Layout (the composition root ``app.Agent`` is the only module that knows them all):

- ``config``      ``AgentConfig``: validated settings (CLI options and/or a TOML file)
- ``storage``     the SQLite database thread shared by the outbox and the small kv store
- ``uplink/``     durable outbox, the one MQTT session to the cloud, publisher, telemetry
- ``localbus/``   the store-local MQTT bus: embedded broker option, consumer, device registry
- ``shadow``      the agent's desired/reported shadow
- ``commands``    cloud commands for the agent
- ``metrics``     Prometheus metrics on an explicit registry
"""

__version__ = "0.1.0"
