"""Assistants of a store, and who a store-assistant token is.

An assistant's id is the ``name`` of their API token (a ``store-assistant`` grant bound
to one store, ``cloud.settings``); the row here gives the person a display name and lets
a manager retire them without touching the token configuration: a retired or unknown
assistant's token is refused by every staff route (``NotAssistant``).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from cloud.db.models_staff import StaffAssistant
from cloud.loyalty.errors import Conflict, NotFound
from cloud.staff.errors import NotAssistant

logger = logging.getLogger(__name__)


def register(session: Session, *, store_id: str, assistant_id: str, display_name: str,
             now_ms: int) -> tuple[StaffAssistant, bool]:
    """Add (or re-activate, or rename) an assistant of ``store_id``; ``(row, created)``.
    An id already used at another store is a ``Conflict``: ids name one person."""
    row = session.get(StaffAssistant, assistant_id, with_for_update=True)
    if row is not None:
        if row.store_id != store_id:
            raise Conflict(f"assistant {assistant_id!r} works at store {row.store_id}")
        row.display_name, row.active = display_name, True
        session.flush()
        return row, False
    row = StaffAssistant(assistant_id=assistant_id, store_id=store_id,
                         display_name=display_name, active=True, created_ms=now_ms)
    session.add(row)
    session.flush()
    logger.info("store %s: assistant %s registered", store_id, assistant_id)
    return row, True


def retire(session: Session, *, store_id: str, assistant_id: str) -> StaffAssistant:
    row = session.get(StaffAssistant, assistant_id, with_for_update=True)
    if row is None or row.store_id != store_id:
        raise NotFound("assistant", f"{assistant_id} at store {store_id}")
    row.active = False
    session.flush()
    logger.info("store %s: assistant %s retired", store_id, assistant_id)
    return row


def active_assistant(session: Session, *, assistant_id: str, store_id: str) -> StaffAssistant:
    """The assistant a token names, if active at its store; ``NotAssistant`` otherwise."""
    row = session.get(StaffAssistant, assistant_id)
    if row is None or row.store_id != store_id:
        raise NotAssistant(assistant_id, "unknown")
    if not row.active:
        raise NotAssistant(assistant_id, "retired")
    return row
