"""Versioned promotion snapshots, canonical JSON and the ruleset hash.

The cloud publishes a ``PromotionSnapshot`` as JSON; stores load it with
``load_snapshot`` and price from ``compile(snapshot)``. A sale records the snapshot's
``ruleset_hash()`` (sha256 of the canonical JSON: sorted keys, no whitespace, promotions
sorted by id, every set-like list sorted) so the cloud can re-price it with the same rules.
"""

from __future__ import annotations

from functools import cached_property
from itertools import pairwise
from typing import Annotated

from pydantic import Field, Strict, ValidationError, field_validator

from pricing.errors import InvalidPromotion
from pricing.model import Currency, Frozen, canonical_json, sha256_of
from pricing.promotions import Promotion

ENGINE_VERSION = "1.0.0"
"""Bumped whenever the same inputs could price differently."""


class PromotionSnapshot(Frozen):
    version: Annotated[int, Strict(), Field(ge=0)]
    currency: Currency
    promotions: tuple[Promotion, ...] = ()

    @field_validator("promotions")
    @classmethod
    def _sorted_unique_ids(cls, promos: tuple[Promotion, ...]) -> tuple[Promotion, ...]:
        ordered = tuple(sorted(promos, key=lambda p: p.id))
        for a, b in pairwise(ordered):
            if a.id == b.id:
                raise ValueError(f"duplicate promotion id {a.id!r}")
        return ordered

    @cached_property
    def _hash(self) -> str:
        return sha256_of(self)

    def ruleset_hash(self) -> str:
        """sha256 hex of the canonical JSON; computed once per snapshot object."""
        return self._hash

    def to_json(self) -> str:
        return canonical_json(self)


def load_snapshot(text: str | bytes) -> PromotionSnapshot:
    """Parse a published snapshot; any problem is an ``InvalidPromotion``."""
    try:
        return PromotionSnapshot.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidPromotion(None, f"{where}: {first['msg']}") from err
