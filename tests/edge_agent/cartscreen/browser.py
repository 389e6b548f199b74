"""Headless Chromium for the cart-screen tests (Playwright drives it)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.services import unavailable

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = os.environ.get("STOREFLEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    """The Chromium to drive (``STOREFLEET_CHROMIUM``), or ``unavailable`` (a failure
    under ``STOREFLEET_REQUIRE_SERVICES=1``, a skip otherwise)."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed")
    return str(path)


@contextlib.asynccontextmanager
async def chromium_page(*, width: int = 1280, height: int = 800
                        ) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in a fresh headless Chromium, and the page errors it raises (a test asserts
    there are none); the browser is closed whatever the test's outcome."""
    executable = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            await browser.close()
