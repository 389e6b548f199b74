"""The cart-screen server runs inside the agent's process and leaves its signals alone."""

from __future__ import annotations

import signal

from starlette.applications import Starlette

from edge_agent.cartscreen.server import CartScreenServer


async def test_serving_does_not_take_over_sigint_or_sigterm() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = CartScreenServer(Starlette(), host="127.0.0.1", port=0)
    await server.start()
    try:
        # uvicorn's own serve() would have installed Server.handle_exit for both here
        during = {sig: signal.getsignal(sig) for sig in before}
    finally:
        await server.stop()
    assert during == before
