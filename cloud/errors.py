"""Errors of the cloud package.

    CloudError                  base of everything raised here (a ``StorefleetError``,
                                protocols.errors: the one root, decision 0031)
     +-- DatabaseUnavailable    the database could not be reached or refused the
     |                          transaction for a reason that may pass (``cause``)
     +-- PublishError           a message could not be handed to the broker
                                (``topic``; the broker error is ``__cause__``)

Third-party errors (SQLAlchemy, aiomqtt) are mapped to these where they enter our code.
"""

from __future__ import annotations

from protocols.errors import StorefleetError


class CloudError(StorefleetError):
    """Base error of the cloud package."""

    reason = "cloud_error"


class DatabaseUnavailable(CloudError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"database unavailable: {detail}")
        self.detail = detail


class PublishError(CloudError):
    def __init__(self, topic: str, detail: str) -> None:
        super().__init__(f"could not publish to {topic!r}: {detail}")
        self.topic = topic
        self.detail = detail
