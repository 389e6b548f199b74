"""Which implementation ``pricing.price`` runs: the compiled engine or the Python one.

``pricing/engine.py`` is the reference implementation; ``pricing/_cengine.pyx`` (built
by ``pip install``/``pip install -e .``) computes the same function in C, identical to
the last minor unit, error and explanation (docs/decisions/0014-compiled-pricing-engine.md).
Both are ``ENGINE_VERSION`` 1.0.0: which one priced a sale does not change its meaning.

``STOREFLEET_PRICING_ENGINE`` (read once, at import) picks one:

- unset or ``auto``: the compiled engine when it is built, else Python;
- ``compiled``: the compiled engine, and an ``ImportError`` at import when it is not built;
- ``python``: the Python engine.

``ENGINE_IMPL`` says which one ``pricing.price`` is.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

ENV = "STOREFLEET_PRICING_ENGINE"
CHOICES = ("auto", "compiled", "python")


def _load() -> tuple[ModuleType | None, ImportError | None]:
    try:
        from pricing import _cengine  # type: ignore[attr-defined]
    except ImportError as err:  # not built (a source checkout without `pip install -e .`)
        return None, err
    return _cengine, None


compiled, IMPORT_ERROR = _load()
"""The extension module, or None with the reason it could not be imported."""


def select(choice: str, *, available: bool) -> str:
    """``compiled`` or ``python`` for a ``STOREFLEET_PRICING_ENGINE`` value."""
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "compiled" and not available:
        raise ImportError(
            f"{ENV}=compiled but pricing._cengine is not built ({IMPORT_ERROR}); "
            "run `pip install -e .`"
        )
    if choice == "auto":
        return "compiled" if available else "python"
    return choice


ENGINE_IMPL = select(os.environ.get(ENV, "") or "auto", available=compiled is not None)


def build(ruleset: Any) -> Any:
    """The compiled form of a new ``Ruleset``, when the compiled engine is the active one
    (otherwise None: the compiled ``price`` builds it on first use)."""
    if ENGINE_IMPL != "compiled" or compiled is None:
        return None
    return compiled.build(ruleset)
