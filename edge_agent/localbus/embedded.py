"""An in-process MQTT 3.1.1 broker (amqtt) for the demo and single-box trials.

    async with EmbeddedBroker(host="127.0.0.1", port=1884) as broker:
        ...  # clients connect to broker.url

Production stores run Mosquitto as the local bus (about 6x faster here, and it keeps
persistent sessions on disk); this one keeps sessions in memory only.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker

from edge_agent.errors import LinkError
from edge_agent.localbus import amqtt_fix

logger = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 1884) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only anonymous auth: amqtt's default packet/event logger and $SYS plugins
            # cost throughput and log every packet.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    async def start(self) -> None:
        # Our subscribers acknowledge after a durable commit, which can exceed amqtt's
        # fixed 5 s PUBACK wait on a loaded box (see amqtt_fix).
        amqtt_fix.apply()
        broker = Broker(self._config())
        try:
            await broker.start()
        except Exception as err:  # amqtt raises its own BrokerError and plain OSErrors
            raise LinkError("local", f"embedded broker on {self.url} failed: {err}") from err
        self._broker = broker
        logger.info("embedded local broker listening on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
            logger.info("embedded local broker stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
