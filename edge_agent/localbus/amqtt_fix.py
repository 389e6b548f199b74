"""Work around amqtt's hard-coded 5 s QoS 1/2 acknowledgement timeout.

amqtt 0.12 waits at most 5 s for a subscriber's PUBACK (``ProtocolHandler.
_handle_qos1_message_flow``) and then *drops* the message: it is neither retried
nor kept for the session (upstream Yakifo/amqtt#391, fix proposed in #397). Our
subscribers acknowledge only after a durable commit (decision 0001), and in the
single-process demo the event loop they share with the broker can stall for
seconds on a loaded 2-core box, so a slow-but-healthy subscriber lost events.

The fix gives the handler module an ``asyncio`` whose ``wait_for`` turns exactly
that 5 s acknowledgement timeout into ``ACK_TIMEOUT_S``; every other timeout in
the module (keep-alive, the 10 s redelivery window) is passed through unchanged.
A disconnect still ends the wait at once (amqtt cancels its ack waiters then).
Remove this module once amqtt ships a configurable ``qos1_puback_timeout``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from typing import Any

logger = logging.getLogger(__name__)

AMQTT_ACK_TIMEOUT_S = 5  # the literal in amqtt's handler this patch replaces
ACK_TIMEOUT_S = 600.0  # long enough for any stall; a dead client is noticed by keep-alive


def _patched_asyncio() -> types.ModuleType:
    proxy = types.ModuleType("asyncio_amqtt_ack_patch")
    proxy.__dict__.update(asyncio.__dict__)

    def wait_for(aw: Any, timeout: float | None = None) -> Any:
        if timeout == AMQTT_ACK_TIMEOUT_S:
            timeout = ACK_TIMEOUT_S
        return asyncio.wait_for(aw, timeout)

    proxy.wait_for = wait_for  # type: ignore[attr-defined]
    return proxy


def apply() -> bool:
    """Patch amqtt's protocol handler once; returns whether the patch is in force."""
    from amqtt.mqtt.protocol import handler

    if getattr(handler, "_storefleet_ack_patch", False):
        return True
    source = inspect.getsource(handler.ProtocolHandler._handle_qos1_message_flow)
    if f"timeout={AMQTT_ACK_TIMEOUT_S})" not in source:
        # amqtt changed; the patch would do nothing useful (or harm). Say so once.
        logger.warning("amqtt ack-timeout patch not applied: handler source changed")
        return False
    handler.asyncio = _patched_asyncio()  # type: ignore[attr-defined]
    handler._storefleet_ack_patch = True  # type: ignore[attr-defined]
    return True
