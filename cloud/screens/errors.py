"""The screens package's error."""

from __future__ import annotations

from cloud.errors import CloudError


class ScreensError(CloudError):
    """A screen playlists request that cannot be carried out (``status`` is the HTTP
    status, ``reason`` the problem's reason and metric label)."""

    reason = "screens"

    def __init__(self, status: int, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason
