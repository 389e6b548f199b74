"""``/docs`` renders on a closed network: Swagger UI's assets come from the API itself.

The cloud app runs on a real uvicorn server on 127.0.0.1; headless Chromium loads
``/docs`` with every request to another host aborted (as on a store or HQ network with
no internet). The page must list the API's operations, and no request may have tried
to leave the host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cloud.api.docs import ASSETS, STATIC_PATH
from cloud.main import create_app
from cloud.publish import MemoryPublisher
from tests.cloud.conftest import make_settings
from tests.edge_agent.cartscreen.browser import CHROMIUM_ARGS, chromium
from tests.edge_agent.helpers import wait_until
from tests.services import free_port

pytestmark = pytest.mark.browser

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning",
                                           lifespan="on"))
    # uvicorn's signal handlers would take pytest's Ctrl-C; this server stops by flag.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(), name="docs-api-server")
    try:
        await wait_until(lambda: server.started or task.done(), within_s=15, what="uvicorn")
        if task.done():
            task.result()
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    # /docs and /openapi.json read no database: no migration needed.
    return create_app(make_settings(f"sqlite:///{tmp_path / 'api.db'}"),
                      publisher=MemoryPublisher(), migrate=False)


async def test_docs_render_with_no_network(app: FastAPI, tmp_path: Path) -> None:
    executable = chromium()
    from playwright.async_api import Route, async_playwright
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    left_host: list[str] = []
    local: list[str] = []

    async def closed_network(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == HOST:
            local.append(url)
            await route.continue_()
        else:
            left_host.append(url)
            await route.abort("internetdisconnected")

    async with served(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.route("**/*", closed_network)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{base}/docs")
            stores = page.locator(".opblock .opblock-summary-path[data-path='/api/v1/stores']")
            try:
                await stores.first.wait_for(timeout=20_000)
            except PlaywrightTimeout:
                pass  # a blank page: the asserts below say which requests were cut off
            await page.screenshot(path=str(tmp_path / "docs-offline.png"))
            operations = await page.locator(".opblock").count()
            titles = await page.locator(".information-container .title").all_text_contents()
        finally:
            await browser.close()
    assert left_host == []
    assert errors == []
    assert operations > 0, "Swagger UI listed no operation"
    assert f"{base}{STATIC_PATH}/swagger-ui-bundle.js" in local
    assert f"{base}/openapi.json" in local
    # Every documented operation is listed, not just the first.
    spec = app.openapi()
    assert operations == sum(len(ops) for ops in spec["paths"].values())
    assert len(titles) == 1 and titles[0].startswith("storefleet cloud")


async def test_docs_page_and_assets_come_from_the_api(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as client:
        page = (await client.get("/docs")).text
        js = await client.get(f"{STATIC_PATH}/swagger-ui-bundle.js")
        assert (await client.get("/redoc")).status_code == 404  # not offered: CDN fonts
    assert "http://" not in page and "https://" not in page
    assert js.status_code == 200
    assert js.content == (ASSETS / "swagger-ui-bundle.js").read_bytes()
    # Shipped with its licence (Apache-2.0) and the record of where it came from.
    assert "Apache License" in (ASSETS / "LICENSE").read_text()
    assert "swagger-ui-dist` 5." in (ASSETS / "README.md").read_text()
