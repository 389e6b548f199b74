"""Simulated audio broadcast unit: applies ``protocols.audio`` outputs, logs and renders.

The names below are imported on first use (PEP 562), so that ``storefleet sim audio
--help`` (this package's ``cli``) does not load the MQTT client and the codecs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware_sim.audio.unit import (
        AudioUnitSim,
        Pcm,
        Segment,
        decode_wav,
        start_audio_unit_sim,
        write_wav,
    )

__all__ = ["AudioUnitSim", "Pcm", "Segment", "decode_wav", "start_audio_unit_sim", "write_wav"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.unit"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
