"""Problem types of the cloud's REST API that devices act on (RFC 9457 ``type`` URIs).

The cloud answers every error as ``application/problem+json`` whose ``type`` is
``TYPE_BASE + reason`` (``cloud.api.problems``). Most types only inform a person; the
ones here change what a store box does, so both sides read them from this one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPE_BASE = "https://storefleet.dev/problems/"

NOTHING_PUBLISHED = TYPE_BASE + "nothing_published"
"""404: HQ has not published this kind of content (promotions, price book) for the store
yet. A normal state for a new store or chain, not a failure: poll again later."""


def problem_type(body: Any) -> str | None:
    """The ``type`` of a decoded problem+json body, or None if it is not one."""
    if isinstance(body, Mapping) and isinstance(body.get("type"), str):
        return str(body["type"])
    return None
