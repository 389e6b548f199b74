"""Headless Chromium for the cart-screen tests (Playwright drives it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.services import unavailable

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
