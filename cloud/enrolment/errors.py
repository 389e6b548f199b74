"""The one error of store enrolment; ``reason`` is label-ready (metrics, problem+json)."""

from __future__ import annotations

from cloud.errors import CloudError


class EnrolmentError(CloudError):
    """``reason``: not_configured | unknown_token | token_used | token_expired |
    revoked | unknown_store | bad_bundle | broker (the plugin refused or did not answer)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
