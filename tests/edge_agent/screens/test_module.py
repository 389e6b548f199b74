"""The screens module in a running agent (decision 0051): with the in-aisle module's cart
screens it serves on their server too, and on its own port when one is set."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edge_agent.cartscreen import SAMPLE_DATA
from edge_agent.modules.screens import Screens
from firmware_sim.layouts import DEFAULT_LAYOUT
from tests.edge_agent.helpers import make_config, running_agent
from tests.services import Mosquitto

pytestmark = [pytest.mark.mosquitto]


async def test_served_beside_the_cart_screens_and_on_its_own_port(
        tmp_path: Path, uplink_broker: Mosquitto, local_broker: Mosquitto) -> None:
    config = make_config(tmp_path, uplink=uplink_broker, local=local_broker, modules={
        "in_aisle": {"cartscreen_port": 0, "cartscreen_host": "127.0.0.1",
                     "store_layout": DEFAULT_LAYOUT, "retail_data": SAMPLE_DATA},
        "screens": {"port": 0, "host": "127.0.0.1"}})
    async with running_agent(config) as agent:
        screens = agent.get(Screens)
        assert screens.cart_url is not None and screens.url is not None
        assert screens.cart_url != screens.url
        for base in (screens.cart_url, screens.url):
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                r = await http.get("/screens/now", params={"surface": "cart"})
                assert r.status_code == 200, r.text
                assert r.json() == {"version": None, "timezone": None, "local_time": None,
                                    "surface": "cart", "zone": None, "items": []}
                assert (await http.get("/signage")).status_code == 200
        async with httpx.AsyncClient(base_url=screens.cart_url, timeout=5) as http:
            assert (await http.get("/cart/C1")).status_code == 200  # the carts' own pages
        assert agent.diagnostics()["modules"]["screens"]["cart_url"] == screens.cart_url
