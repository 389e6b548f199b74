"""Errors of the coupon-trigger service.

    TriggerError            base of everything raised here
     +-- NoCodesLeft        no pre-allocated code range of ``engine_code`` has a code left
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class TriggerError(StorefleetError):
    """Base error of ``edge_agent.inference.triggers``."""

    reason = "trigger_error"


class NoCodesLeft(TriggerError):
    def __init__(self, engine_code: str) -> None:
        super().__init__(f"no coupon codes left for {engine_code!r}")
        self.engine_code = engine_code
