"""Serve the cart-screen app with uvicorn inside the agent's event loop.

    server = CartScreenServer(app, host="0.0.0.0", port=8090)
    await server.start()      # returns once listening; ``server.port`` is the bound port
    ...
    await server.stop()

Port 0 picks a free port (tests). uvicorn runs as a task of the agent's loop - no thread,
no second process - so the WebSocket pushes are plain ``queue.put_nowait`` calls from the
trigger path. ``websockets-sansio`` is uvicorn's WebSocket implementation on top of the
``websockets`` package without its deprecated legacy server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from edge_agent.errors import AgentError

logger = logging.getLogger(__name__)


class CartScreenError(AgentError):
    """The cart-screen server could not start."""


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that runs as one task of a larger process and leaves SIGINT and
    SIGTERM to that process.

    ``uvicorn.Server.serve`` installs its own handlers for both (``capture_signals``,
    ``signal.signal``, uvicorn >= 0.29), replacing the process's; on Ctrl-C it stops
    serving on its own, then re-raises the signal once for every server that caught it.
    Inside the agent or the demo that stopped the cart screens (or the API) behind their
    owner's back and delivered Ctrl-C twice, which the demo takes as "abort". Here the
    owner stops the server (``should_exit``) when it decides to.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CartScreenServer:
    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        self.host = host
        self.app = app
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP (base_events._set_nodelay); with proto 0 every accepted connection kept
        # Nagle on, and a JSON answer written in two pieces waited ~40 ms for the
        # client's delayed ACK (decision 0063).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            # bound here so that port 0 resolves before uvicorn starts and errors are ours
            self._sock.bind((host, port))
        except OSError as err:
            self._sock.close()
            raise CartScreenError(f"cart screen cannot listen on {host}:{port}: {err}") from err
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio",
                                ws_ping_interval=20.0, access_log=False,
                                # screen messages are a few hundred bytes: deflating each
                                # one costs the store box more CPU than the bytes are worth
                                ws_per_message_deflate=False)
        self._server = EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    def add_routes(self, routes: Sequence[BaseRoute]) -> None:
        """Serve ``routes`` too (another module's pages on the same origin, such as the
        screens' signage: a cart page can then ask them without CORS)."""
        self.app.router.routes.extend(routes)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]),
                                         name="cartscreen-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise CartScreenError("the cart-screen server stopped during start-up")
            await asyncio.sleep(0.02)
        logger.info("cart screens at %s/cart/{cart_id}", self.url)

    async def stop(self) -> None:
        if self._task is None:
            self._sock.close()
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except TimeoutError:
            self._task.cancel()
            logger.warning("cart-screen server did not stop in time")
        self._task = None
        self._sock.close()
