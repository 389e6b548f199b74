"""The cart tablet's web app at the end of a trip, over the cart screen's HTTP API.

What ``edge_agent/cartscreen/static/app.js`` does when the shopper pays, against the
agent's cart-screen server (``edge_agent/cartscreen/web.py``): read the cart's state
(basket, wallet, how payment is confirmed), apply one coupon from the wallet (some
shoppers do), ``POST .../checkout`` for the payment QR, then confirm the payment the way
the store is set up: with ``payment_confirmation = "screen"`` (demos, trials) the
screen's "I have paid" button (``POST .../checkout/{checkout_id}/paid``); with
``"provider"`` the payment provider's signed notice confirms, so the tablet only shows
the QR. The agent records the paid checkout as a ``sale`` (channel ``cart``).

Errors: a call that fails raises ``ScreenCallError`` (``step``, ``status``: the HTTP
status, None when the screen could not be reached or answered garbage; ``detail``),
converted here from httpx's errors. A coupon the screen refuses (in use on another cart,
already used) is not an error: the shopper pays without it (``Trip.coupon_refused``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

# How long the tablet waits for the screen's basket to show every item the shopper
# scanned: the item messages cross the store bus (QoS 1) while the shopper walks to the
# checkout, so this is rarely needed; past it the shopper pays what the screen shows.
SETTLE_S = 3.0
SETTLE_POLL_S = 0.2


class ScreenCallError(Exception):
    """A cart-screen call that failed: ``status`` is the HTTP status (None: the screen
    could not be reached, or its answer was not the JSON object expected)."""

    def __init__(self, step: str, status: int | None, detail: str) -> None:
        super().__init__(f"{step}: {status or 'no answer'}: {detail}")
        self.step = step
        self.status = status
        self.detail = detail


@dataclass
class Trip:
    """The end of one shopping trip at the screen: what the simulator counts, and what a
    test compares with the sale the agent recorded."""

    session_id: str
    scanned: dict[str, int]  # sku -> quantity the shopper scanned
    settled: bool = False  # the screen's basket showed every scanned item
    coupon: str | None = None  # the code applied
    coupon_refused: str | None = None  # why the screen refused the code tried
    checkout_id: str | None = None
    total: int | None = None  # the payment QR's amount, minor units
    confirmation: str | None = None  # the store's payment_confirmation
    receipt: dict[str, Any] | None = None  # the e-receipt, once paid on the screen
    retried: bool = False  # paying was refused once (stale QR) and done again


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every tablet: httpx builds one per client, loading
    the CA bundle (~80 ms of CPU), and a store starts its carts at once on one event
    loop (300 carts blocked it for 23 s, past their MQTT keepalive)."""
    return httpx.create_ssl_context()


class ScreenTablet:
    """One cart's tablet talking to the cart screen at ``base_url`` (the agent's
    ``InAisle.url``). ``transport``: httpx's, for tests (default: real HTTP)."""

    def __init__(self, base_url: str, cart_id: str, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cart_id = cart_id
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                       transport=transport, verify=_tls())
        self._cart = f"/api/cart/{quote(cart_id, safe='')}"

    async def __aenter__(self) -> ScreenTablet:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._http.aclose()

    async def state(self) -> dict[str, Any]:
        return await self._call("state", "GET", f"{self._cart}/state")

    async def apply(self, code: str) -> dict[str, Any]:
        return await self._call("apply", "POST",
                                f"{self._cart}/coupons/{quote(code, safe='')}/apply")

    async def checkout(self) -> dict[str, Any]:
        return await self._call("checkout", "POST", f"{self._cart}/checkout")

    async def paid(self, checkout_id: str) -> dict[str, Any]:
        return await self._call("paid", "POST",
                                f"{self._cart}/checkout/{quote(checkout_id, safe='')}/paid")

    async def _call(self, step: str, method: str, path: str) -> dict[str, Any]:
        try:
            r = await self._http.request(method, path)
        except httpx.HTTPError as err:
            raise ScreenCallError(step, None, f"{type(err).__name__}: {err}") from err
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code >= 400:
            detail = doc.get("detail") if isinstance(doc, dict) else None
            raise ScreenCallError(step, r.status_code, str(detail or r.text[:200]))
        if not isinstance(doc, dict):
            raise ScreenCallError(step, None, f"not a JSON object: {r.text[:200]!r}")
        return doc


def _shows(state: dict[str, Any], scanned: dict[str, int]) -> bool:
    """The screen's basket holds what was scanned (products the catalog does not know
    are listed apart, without a quantity)."""
    basket = state.get("basket") or {}
    unknown = set(basket.get("unknown") or ())
    return (dict(basket.get("basket") or {}) == {s: q for s, q in scanned.items()
                                                  if s not in unknown}
            and unknown <= set(scanned))


async def end_trip(tablet: ScreenTablet, trip: Trip, *, rng: random.Random,
                   coupon_share: float, pay: bool, settle_s: float = SETTLE_S) -> Trip:
    """Pay for ``trip.scanned`` on the screen; fills in ``trip``. A basket with nothing
    to pay is left alone. Raises ``ScreenCallError`` when a call fails."""
    state = await tablet.state()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while not _shows(state, trip.scanned) and loop.time() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
        state = await tablet.state()
    trip.settled = _shows(state, trip.scanned)
    if not trip.settled:
        logger.warning("cart %s: the screen's basket %s is not what was scanned %s; "
                       "paying what the screen shows", tablet.cart_id,
                       (state.get("basket") or {}).get("basket"), trip.scanned)
    basket = state.get("basket")  # None: the screen cannot price (checkout says why)
    if not trip.scanned or (basket is not None and not basket.get("lines")):
        return trip  # nothing to pay for: the shopper just leaves
    trip.confirmation = str(state.get("payment_confirmation"))
    usable = [w for w in state.get("wallet") or () if not w.get("applied") and w.get("code")]
    if usable and rng.random() < coupon_share:
        code = str(rng.choice(usable)["code"])
        try:
            await tablet.apply(code)
            trip.coupon = code
        except ScreenCallError as err:
            if err.status not in (404, 409):  # refused for this shopper: pay without it
                raise
            trip.coupon_refused = err.detail
            logger.info("cart %s: coupon %s refused: %s", tablet.cart_id, code, err.detail)
    await _checkout(tablet, trip)
    if not pay or trip.confirmation != "screen":
        return trip  # the payment provider's notice confirms, not the tablet
    assert trip.checkout_id is not None
    try:
        trip.receipt = await tablet.paid(trip.checkout_id)
    except ScreenCallError as err:
        if err.status != 409:
            raise
        # The basket no longer prices at the QR's amount (a coupon on it was used on
        # another cart meanwhile): nothing was recorded; the screen asks to check out again.
        logger.info("cart %s: payment refused, checking out again: %s", tablet.cart_id,
                    err.detail)
        trip.retried = True
        await _checkout(tablet, trip)
        trip.receipt = await tablet.paid(trip.checkout_id)
    return trip


async def _checkout(tablet: ScreenTablet, trip: Trip) -> None:
    co = await tablet.checkout()
    try:
        trip.checkout_id, trip.total = str(co["checkout_id"]), int(co["total"])
    except (KeyError, TypeError, ValueError) as err:
        raise ScreenCallError("checkout", None, f"bad checkout answer: {err!r}") from err
