"""One MQTT session to the cloud broker: ``async with UplinkLink(...) as link``.

The link knows MQTT, not the agent: it connects with client id = store id and the
Last Will (``Death(bd_seq)``, retained, QoS 1, on ``state``), publishes, subscribes and
yields downlink messages. It does not reconnect; ``uplink.session`` supervises it
(backoff around ``async with``), aiomqtt style. aiomqtt errors become ``LinkError``.

``mqtts://`` addresses connect over TLS, with the store's client certificate for mTLS
(decision 0032). A failed connect is classified in ``connect_failure`` (``tls``,
``refused``, ``network``) for the session to count: a broker that refuses the store's
certificate under TLS 1.3 does so after the client's handshake has completed, so aiomqtt
only reports a timeout; paho logs the TLS alert, which ``_TlsAlerts`` keeps for the error.

A link is one host. With a clustered broker (``cloud_url`` listing the nodes, decision
0062) the session hands each new link the next host of its ``HostRotation``, so a
node that died, or never answered, costs one backoff and the next session is on
another node; the outbox then re-sends whatever the cloud has not acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import aiomqtt

from edge_agent.config import BrokerAddress
from edge_agent.errors import LinkError
from edge_agent.uplink.outage import mqtt_logger
from protocols import topics
from protocols.codec import encode
from protocols.messages import Death

logger = logging.getLogger(__name__)


# paho's and aiomqtt's records for the uplink's MQTT client.
_mqtt_logger = mqtt_logger(f"{__name__}.mqtt")


class _TlsAlerts(logging.Filter):
    """Keeps the last TLS error paho logged while a link connects (it passes every
    record on unchanged)."""

    _MARKERS = ("[SSL", "SSL:", "TLSV1", "certificate")

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(marker in message for marker in self._MARKERS):
            self.last = message
        return True


def _failure_reason(err: aiomqtt.MqttError, tls_alert: str | None) -> str:
    """``tls`` (handshake or certificate), ``refused`` (CONNACK refused: credentials,
    rights) or ``network`` (no route, no answer, reset)."""
    if tls_alert is not None or any(m in str(err) for m in _TlsAlerts._MARKERS):
        return "tls"
    if isinstance(err, aiomqtt.MqttCodeError) and err.rc not in (None, 0):
        return "refused"
    return "network"


class UplinkLink:
    def __init__(
        self,
        address: BrokerAddress,
        *,
        store_id: str,
        bd_seq: int,
        keepalive_s: int,
        window: int,
        timeout_s: float = 10.0,
    ) -> None:
        self.store_id = store_id
        self.bd_seq = bd_seq
        self._address = address
        # Why the last connect failed (None: it did not fail), for the session's metric.
        self.connect_failure: str | None = None
        will = aiomqtt.Will(
            topics.state(store_id), encode(Death(bd_seq=bd_seq)), qos=1, retain=True
        )
        self._client = aiomqtt.Client(
            **address.client_options(),
            identifier=store_id,
            will=will,
            # A persistent session: commands sent during a short outage are queued by the
            # broker and delivered on reconnect (they carry expires_at for long ones).
            clean_session=False,
            keepalive=keepalive_s,
            timeout=timeout_s,
            # paho sends at most this many QoS 1 publishes before PUBACKs; match our window
            # so paho never holds back messages we consider in flight.
            max_inflight_messages=window,
            logger=_mqtt_logger,
        )
        # aiomqtt logs a warning above 10 pending calls; our window is deliberately larger.
        self._client.pending_calls_threshold = window + 16

    @property
    def address(self) -> BrokerAddress:
        """The broker host this link connects to (one node of a cluster)."""
        return self._address

    async def __aenter__(self) -> Self:
        alerts = _TlsAlerts()
        # First in line: the lost-socket filter after it may end the record's way.
        _mqtt_logger.filters.insert(0, alerts)
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as err:
            self.connect_failure = _failure_reason(err, alerts.last)
            if self.connect_failure == "tls":
                raise LinkError("uplink", f"TLS handshake with {self._address.url} failed: "
                                          f"{alerts.last or err}") from err
            raise LinkError("uplink", f"connect to {self._address.url} failed: {err}") from err
        finally:
            _mqtt_logger.removeFilter(alerts)
        logger.info(
            "uplink connected to %s as %s (bd_seq %d)",
            self._address.url,
            self.store_id,
            self.bd_seq,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._client.__aexit__(exc_type, exc, tb)
        except aiomqtt.MqttError as err:
            logger.debug("uplink disconnect: %s", err)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        """Publish; with QoS 1 this returns once the broker's PUBACK has arrived."""
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as err:
            raise LinkError("uplink", f"publish to {topic} failed: {err}") from err

    async def subscribe(self, filters: list[str]) -> None:
        try:
            await self._client.subscribe([(f, 1) for f in filters])
        except aiomqtt.MqttError as err:
            raise LinkError("uplink", f"subscribe failed: {err}") from err

    async def messages(self) -> AsyncIterator[aiomqtt.Message]:
        """Downlink messages until the session drops (then ``LinkError``)."""
        try:
            async for message in self._client.messages:
                yield message
        except aiomqtt.MqttError as err:
            raise LinkError("uplink", f"session lost: {err}") from err
