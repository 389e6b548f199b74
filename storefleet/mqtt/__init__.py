"""Shared MQTT plumbing for the agent, the cloud, the simulators and the tests
(decision 0034): ``AckSubscriber``, the one ack-after-commit subscriber."""

from storefleet.mqtt.subscriber import AckSubscriber, NotConnected, StopReport

__all__ = ["AckSubscriber", "NotConnected", "StopReport"]
