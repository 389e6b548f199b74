"""Simulated ESL access point and its labels, speaking ``protocols.esl`` on the bus.

The names below are imported on first use (PEP 562), so that ``storefleet sim esl
--help`` (this package's ``cli``) does not load the MQTT client and the codecs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware_sim.esl.ap import EslApSim, SimLabel, start_esl_ap_sim

__all__ = ["EslApSim", "SimLabel", "start_esl_ap_sim"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.ap"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
