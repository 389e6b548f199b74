"""Simulators of store devices speaking the real wire protocols, plus a store simulator.

They talk to the edge agent only over the wire (the store-local MQTT bus here),
never by importing it.
"""
