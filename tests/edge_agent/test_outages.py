"""While a broker is gone the agent says so: not connected (uplink: not cloud-ready).

One outage is one WARNING when it starts and one INFO with the count of failed
reconnects when it ends, however many attempts fail in between (paho's per-attempt
"failed to receive on socket" ERRORs are not repeated at ERROR). Both reconnect loops:
the uplink's and the local bus consumer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from protocols import encode, topics
from protocols.messages import Birth, CloudReady
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto

pytestmark = pytest.mark.mosquitto


_CLOUD_LOG = logging.getLogger("test.cloud")  # the test's own MQTT client logs apart


async def _answer_births(broker: Mosquitto, store: str) -> None:
    """Play cloud ingest's part of the handshake: answer every birth with ``ready``."""
    while True:
        try:
            async with aiomqtt.Client(broker.host, broker.port, identifier="cloud",
                                      logger=_CLOUD_LOG) as cloud:
                await cloud.subscribe(topics.state(store), qos=1)
                async for msg in cloud.messages:
                    payload = msg.payload if isinstance(msg.payload, bytes) else b""
                    if b'"online":true' not in payload:
                        continue
                    birth = Birth.model_validate_json(payload)
                    ready = CloudReady(bd_seq=birth.bd_seq, ts=1)
                    await cloud.publish(topics.ready(store), encode(ready), qos=1)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)  # the broker is down: try again, like ingest does


@contextlib.asynccontextmanager
async def resetting_listener(port: int) -> AsyncIterator[list[int]]:
    """A middlebox on the broker's port that accepts and resets every connection.

    What a partition behind a firewall or a load balancer looks like to the agent: the
    TCP connect succeeds, the first read fails ("failed to receive on socket")."""
    resets: list[int] = []

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close with RST, not FIN (struct linger {l_onoff, l_linger}).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(1), 1.0)  # the client's CONNECT
        resets.append(1)
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", port)
    try:
        yield resets
    finally:
        server.close()
        await server.wait_closed()


async def test_an_outage_resets_cloud_ready_and_logs_one_warning(
    tmp_path: Path, mosquitto_factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=0.5, reconnect_min_s=0.1, reconnect_max_s=0.2)
    cloud = asyncio.create_task(_answer_births(uplink, config.store_id), name="test-cloud")
    try:
        async with running_agent(config) as agent:
            await wait_until(lambda: metric(agent, "storefleet_uplink_cloud_ready") == 1,
                             what="cloud ready")
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            uplink.stop()
            await wait_until(lambda: metric(agent, "storefleet_uplink_connected") == 0,
                             what="uplink disconnected")
            assert metric(agent, "storefleet_uplink_cloud_ready") == 0
            # Let several reconnects fail (backoff 0.1-0.2 s): refused, then reset.
            await asyncio.sleep(1.0)
            async with resetting_listener(uplink.port):
                await wait_until(lambda: any(
                    "failed to receive on socket" in r.getMessage()
                    and not r.name.startswith("test.") for r in caplog.records
                ), what="a reconnect reset by the middlebox")
            assert metric(agent, "storefleet_uplink_cloud_ready") == 0
            during = _agent_records(caplog, logging.WARNING)
            assert [r.levelno for r in during] == [logging.WARNING], [
                (r.name, r.levelname, r.getMessage()) for r in during
            ]
            assert "outage" in during[0].getMessage()
            uplink.start()
            await wait_until(lambda: metric(agent, "storefleet_uplink_cloud_ready") == 1,
                             within_s=20, what="cloud ready again")
            records = _agent_records(caplog, logging.INFO)
            warnings = [r for r in records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, [(r.name, r.getMessage()) for r in warnings]
            ended = [r for r in records if "outage ended" in r.getMessage()]
            assert len(ended) == 1 and ended[0].levelno == logging.INFO
            failed = ended[0].args[-1]  # type: ignore[index]
            assert isinstance(failed, int) and failed >= 3, ended[0].getMessage()
    finally:
        cloud.cancel()
        await asyncio.gather(cloud, return_exceptions=True)


async def test_a_local_bus_outage_logs_one_warning_and_a_count(
    tmp_path: Path, mosquitto_factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, reconnect_min_s=0.1,
                         reconnect_max_s=0.2)
    async with running_agent(config) as agent:
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        local.stop()
        await wait_until(lambda: not agent.local.connected, what="local bus disconnected")
        await asyncio.sleep(1.0)  # reconnects refused
        async with resetting_listener(local.port):
            await wait_until(lambda: any(
                "failed to receive on socket" in r.getMessage() for r in caplog.records
            ), what="a reconnect reset by the middlebox")
        during = _agent_records(caplog, logging.WARNING)
        assert [r.levelno for r in during] == [logging.WARNING], [
            (r.name, r.levelname, r.getMessage()) for r in during
        ]
        assert "local bus outage started" in during[0].getMessage()
        local.start()
        await wait_until(lambda: agent.local.connected, within_s=20, what="local bus back")
        records = _agent_records(caplog, logging.INFO)
        assert len([r for r in records if r.levelno >= logging.WARNING]) == 1
        ended = [r for r in records if "local bus outage ended" in r.getMessage()]
        assert len(ended) == 1 and ended[0].levelno == logging.INFO
        failed = ended[0].args[-1]  # type: ignore[index]
        assert isinstance(failed, int) and failed >= 3, ended[0].getMessage()
        assert agent.uplink.connected


def _agent_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= level and not r.name.startswith("test.")]


def test_a_new_cause_inside_an_outage_is_one_more_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A first attempt that timed out, then attempts refused for the certificate: the
    operator is told about the certificate once, not about every refused attempt."""
    from edge_agent.errors import LinkError
    from edge_agent.uplink.outage import Outage
    from protocols.clock import ManualClock

    log = logging.getLogger("test.outage")
    outage = Outage("uplink", clock=ManualClock(), log=log)
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        outage.lost(LinkError("uplink", "timed out"), cause="network")
        for _ in range(3):
            outage.lost(LinkError("uplink", "TLS handshake failed: UNKNOWN_CA"), cause="tls")
        outage.lost(LinkError("uplink", "session lost"))  # a session's end has no cause
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "outage started" in warnings[0] and "timed out" in warnings[0]
    assert "cause is now tls" in warnings[1] and "UNKNOWN_CA" in warnings[1]
    assert outage.failed_attempts == 4
