"""The rollouts package's error (decision 0040)."""

from __future__ import annotations

from cloud.errors import CloudError


class RolloutError(CloudError):
    """A rollout request that cannot be carried out (``status`` is the HTTP status,
    ``reason`` the problem's reason and metric label)."""

    reason = "rollout"

    def __init__(self, status: int, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason
