"""The uplink with several broker hosts in ``cloud_url`` (decision 0062): each session
connects to the next host, so a host that is down costs one backoff and the agent ends
up on a live one; when the host it is on dies, it moves to another.

Two independent Mosquittos stand in for cluster nodes here (they share no sessions:
this tests the agent's choice of host, not the broker's failover, which
``tests/integration/test_broker_cluster_failover.py`` runs on RabbitMQ).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError
from protocols import topics
from protocols.broker import BrokerAddress
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def _dead_port() -> int:
    """A loopback port nobody listens on (connects are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _retained_birth(broker: Mosquitto, store: str) -> bytes | None:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"watch-{store}") as c:
        await c.subscribe(topics.state(store), qos=1)
        try:
            async with asyncio.timeout(2):
                async for message in c.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        except TimeoutError:
            return None
    return None


async def test_the_agent_moves_to_another_host_when_its_host_dies(
    tmp_path: Path, mosquitto_factory: Callable[[], Mosquitto]
) -> None:
    a, b = mosquitto_factory(), mosquitto_factory()
    dead = _dead_port()
    brokers = {a.port: a, b.port: b}
    url = f"mqtt://127.0.0.1:{dead},127.0.0.1:{a.port},127.0.0.1:{b.port}"
    config = make_config(tmp_path, uplink=a, local=None, cloud_url=url)
    # The agent's order of hosts is its store id's (seeded): the same in every run.
    order = [h.port for h in BrokerAddress.parse(url, setting="x").rotation(
        seed=config.store_id).order]

    async with running_agent(config, connected=False) as agent:
        await wait_until(lambda: agent.uplink.connected, within_s=15, what="uplink up")
        link = agent.uplink.link
        assert link is not None
        first = link.address.port
        assert first in brokers
        # Every host before it in the store's order was tried: the dead one failed.
        refused = 1 if order.index(dead) < order.index(first) else 0
        assert metric(agent, "storefleet_uplink_connect_failures_total",
                      reason="network") == refused
        assert await _retained_birth(brokers[first], config.store_id) is not None

        brokers[first].kill()  # the node the store is on dies
        other = next(port for port in brokers if port != first)
        await wait_until(lambda: agent.uplink.link is not None
                         and agent.uplink.link.address.port == other,
                         within_s=20, what="uplink on the other host")
        # Born again on the survivor: a session there, with the whole birth handshake.
        assert await _retained_birth(brokers[other], config.store_id) is not None
        assert agent.uplink.connected


def test_cloud_url_takes_a_host_list_and_names_it_in_errors(tmp_path: Path) -> None:
    config = AgentConfig(store_id="S001", data_dir=tmp_path,
                         cloud_url="mqtts://S001@n1:8883,n2:8883,n3")
    assert config.cloud.hosts == (("n1", 8883), ("n2", 8883), ("n3", 8883))
    assert config.cloud.username == "S001" and config.cloud.tls
    with pytest.raises(ConfigError, match=r"cloud_url.*\(host 2, ''\) has an empty host"):
        AgentConfig(store_id="S001", data_dir=tmp_path, cloud_url="mqtts://n1,,n3")
