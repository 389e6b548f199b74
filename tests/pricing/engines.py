"""The pricing engine implementations the tests run: the Python reference and the
compiled one (``pricing.native``).

``engine_price(name)`` returns that implementation's ``price``. Where the compiled engine
is not built the tests that ask for it are skipped, except with
``STOREFLEET_REQUIRE_SERVICES=1`` (CI), where they fail: CI must never fall back silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from pricing import engine, native

IMPLEMENTATIONS = ("python", "compiled")


def required() -> bool:
    return os.environ.get("STOREFLEET_REQUIRE_SERVICES") == "1"


def engine_price(name: str) -> Callable[..., Any]:
    if name == "python":
        return engine.price
    if native.compiled is None:
        reason = f"compiled pricing engine not built: {native.IMPORT_ERROR}"
        if required():
            pytest.fail(reason + " (STOREFLEET_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    price: Callable[..., Any] = native.compiled.price
    return price
