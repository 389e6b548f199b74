"""The shared capped backoff (``protocols.backoff``, decision 0031), re-exported where
the agent imported it from before; new code imports ``protocols.backoff``."""

from __future__ import annotations

from protocols.backoff import Backoff

__all__ = ["Backoff"]
