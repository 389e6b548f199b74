"""Dialect-aware idempotent writes (``INSERT ... ON CONFLICT``).

SQLite and PostgreSQL both support ``ON CONFLICT`` and ``RETURNING``; SQLAlchemy
spells them with a dialect-specific ``insert``, picked here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.db.models import Base, Event, TelemetryLatest


def dialect_insert(session: Session, model: type[Base]) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no idempotent insert for dialect {name!r}")


def insert_events(session: Session,
                  rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert events keyed on ``(store_id, id)``; returns the keys actually inserted.

    An event id is unique within its store only (decision 0026). A row whose key is
    already stored is skipped by the database (``DO NOTHING``) and is absent from the
    result: the caller counts it as a duplicate.
    """
    if not rows:
        return set()
    stmt = (
        dialect_insert(session, Event)
        .on_conflict_do_nothing(index_elements=["store_id", "id"])
        .returning(Event.store_id, Event.id)
    )
    inserted: set[tuple[str, str]] = set()
    # One statement per chunk: SQLite caps bound parameters (32766 since 3.32); a chunk
    # of 500 rows x 9 columns stays far below it.
    for start in range(0, len(rows), 500):
        result = session.execute(stmt.values(list(rows[start : start + 500])))
        inserted.update((row.store_id, row.id) for row in result)
    return inserted


def upsert_latest_telemetry(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Keep the newest value per (store, device, metric); an older sample never wins."""
    if not rows:
        return
    base = dialect_insert(session, TelemetryLatest)
    stmt = base.on_conflict_do_update(
        index_elements=["store_id", "device_id", "metric"],
        set_={"value": base.excluded.value, "ts": base.excluded.ts},
        where=TelemetryLatest.ts <= base.excluded.ts,
    )
    for start in range(0, len(rows), 500):
        session.execute(stmt.values(list(rows[start : start + 500])))
