"""Errors of cloud.promotions.

    PromotionError              base (a CloudError)
     +-- InvalidDefinition      a promotion the engine would refuse, or one that could
     |                          never apply (``detail``; ``field``: where, when known)
     +-- UnknownPromotion       no promotion / publication with that id or version
     +-- SignatureInvalid       a snapshot document whose signature does not verify
                                (``key_id``; tampered, or signed by an untrusted key)
"""

from __future__ import annotations

from cloud.errors import CloudError


class PromotionError(CloudError):
    """Base error of cloud.promotions."""


class InvalidDefinition(PromotionError):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"invalid promotion: {detail}")
        self.detail = detail
        self.field = field


class UnknownPromotion(PromotionError):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class SignatureInvalid(PromotionError):
    def __init__(self, detail: str, *, key_id: str | None = None) -> None:
        super().__init__(f"snapshot signature invalid: {detail}")
        self.detail = detail
        self.key_id = key_id
