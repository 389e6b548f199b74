"""The store-local MQTT bus: embedded broker option, the agent's consumer, device registry."""
