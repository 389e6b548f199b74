"""The simulators' broker URL: ``protocols.broker.BrokerAddress`` (decision 0032), with
a bare ``host:port`` accepted as ``mqtt://host:port`` (what ``--bus`` took before).

    bus = bus_address("mqtt://127.0.0.1:1884")
    aiomqtt.Client(**bus.client_options(), identifier="sim-...")
"""

from __future__ import annotations

from protocols.broker import BrokerAddress

# The name the simulators' signatures use for a parsed ``--bus``.
MqttUrl = BrokerAddress


def bus_address(url: str) -> BrokerAddress:
    """``url`` parsed; ``BrokerAddressError`` (a ValueError's sibling, ProtocolError)
    names ``--bus``."""
    return BrokerAddress.parse(url if "://" in url else f"mqtt://{url}", setting="--bus")
