"""The staff assistant in the cloud (decision 0065): service functions over SQLAlchemy
sessions, no HTTP here (``cloud.api.routes.staff`` is the API, ``cloud/api/static/staff``
the assistants' page).

==================  ===============================================================
``errors``          ``StaffError`` and its subclasses (the routes map them once)
``metrics``         joins, refusals, coupons given, sales indexed
``assistants``      assistants of a store; who a store-assistant token is
``join``            join by QR: a member enrolled at the assistant's store
``sales``           the ingest hook keeping ``store_sales`` (one row per sale event)
``counter``         the member at the counter
``lists``           birthdays this week and lapsed members (paged, in SQL)
``rankings``        store and assistant figures over a period (GROUP BY, in SQL)
``winback``         the one-tap coupon for a lapsed member (idempotent)
==================  ===============================================================

Every function takes the caller's session and never commits: the caller owns the
transaction.
"""

from cloud.staff.errors import JoinCodeRefused, NoCampaign, NotAssistant, NotLapsed, StaffError
from cloud.staff.metrics import StaffMetrics

__all__ = ["JoinCodeRefused", "NoCampaign", "NotAssistant", "NotLapsed", "StaffError",
           "StaffMetrics"]
