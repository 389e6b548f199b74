"""Dialect-aware idempotent writes (``INSERT ... ON CONFLICT``).

SQLite and PostgreSQL both support ``ON CONFLICT`` and ``RETURNING``; SQLAlchemy
spells them with a dialect-specific ``insert``, picked here once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

import pydantic_core
from sqlalchemy import Table, case, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.db.models import Base, Event, Store, TelemetryLatest


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
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One statement of nine arrays: its text never changes, so psycopg parses it
        # once and the server prepares it, where a 500-row VALUES list was parsed by
        # psycopg in Python for every batch (half of a PostgreSQL batch's time).
        params: dict[str, Any] = {col: [row[col] for row in rows]
                                  for col in _EVENT_COLUMNS if col != "data"}
        # The data as one JSON array, not a json[]: psycopg quotes and escapes each
        # element of a text array in Python, character by character (60 % of a batch's
        # time, decision 0058).
        params["data"] = "[" + ",".join(_json_text(row["data"]) for row in rows) + "]"
        result = connection.execute(_PG_INSERT_EVENTS, params)
        return {(row.store_id, row.id) for row in result}
    # SQLite: multi-row INSERTs of fixed text, given to the driver as they are. Through
    # SQLAlchemy's executemany (decision 0055) each row's parameters were processed one
    # by one (bind processors, the JSON type's json.dumps): a third of a batch's time
    # (decision 0058).
    inserted: set[tuple[str, str]] = set()
    for start in range(0, len(rows), _SQLITE_ROWS):
        chunk = rows[start:start + _SQLITE_ROWS]
        flat = tuple(value for row in chunk for value in (
            row["store_id"], row["id"], row["kind"], row["device_id"], row["seq"],
            row["ts"], row["historical"], _json_text(row["data"]), row["received_ms"]))
        result = connection.exec_driver_sql(_sqlite_insert_events(len(chunk)), flat)
        inserted.update((store_id, id_) for store_id, id_ in result)
    return inserted


def _json_text(data: Any) -> str:
    """``data`` as the JSON column stores it. pydantic's encoder (Rust) is six times
    faster than ``json.dumps`` and writes the same values (compact, UTF-8 rather than
    ``\\u`` escapes: the same once read back); what it cannot encode ``json.dumps``
    tries, as the column type would."""
    try:
        return pydantic_core.to_json(data).decode()
    except (pydantic_core.PydanticSerializationError, UnicodeDecodeError):
        return json.dumps(data)


_EVENT_COLUMNS = ("store_id", "id", "kind", "device_id", "seq", "ts", "historical", "data",
                  "received_ms")
# Rows per SQLite INSERT: 900 parameters, far below SQLite's 32,766 (3.32 and later), and
# at most this many statement texts for the driver's statement cache (128 by default).
_SQLITE_ROWS = 100


@functools.lru_cache(maxsize=_SQLITE_ROWS)
def _sqlite_insert_events(n: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)
    return (f"INSERT INTO {Event.__tablename__} ({', '.join(_EVENT_COLUMNS)}) VALUES {values}"
            " ON CONFLICT (store_id, id) DO NOTHING RETURNING store_id, id")


_PG_INSERT_EVENTS = text(
    "INSERT INTO events (store_id, id, kind, device_id, seq, ts, historical, data,"
    " received_ms)"
    " SELECT * FROM unnest(CAST(:store_id AS text[]), CAST(:id AS text[]),"
    " CAST(:kind AS text[]), CAST(:device_id AS text[]), CAST(:seq AS bigint[]),"
    " CAST(:ts AS bigint[]), CAST(:historical AS boolean[]),"
    " ARRAY(SELECT value FROM json_array_elements(CAST(:data AS json)) WITH ORDINALITY"
    " ORDER BY ordinality),"
    " CAST(:received_ms AS bigint[]))"
    " ON CONFLICT (store_id, id) DO NOTHING RETURNING store_id, id"
)


def touch_stores(session: Session, store_ids: Iterable[str], *, now_ms: int) -> set[str]:
    """``last_seen_ms = max(last_seen_ms, now_ms)`` for these stores in one ``UPDATE``;
    returns the ids of those that exist (the caller creates the others).

    One statement per batch instead of a locking read and a flush per store; the row
    lock the ``UPDATE`` takes (PostgreSQL) serialises it with another worker's, as the
    read ``FOR UPDATE`` did, and the ``max`` is computed by the database on the row it
    holds, so neither worker's newer time can be lost (decision 0055)."""
    ids = sorted(set(store_ids))  # one lock order for every worker
    if not ids:
        return set()
    table = cast(Table, Store.__table__)
    stmt = (
        update(table)
        .where(table.c.store_id.in_(ids))
        .values(last_seen_ms=case(
            (table.c.last_seen_ms.is_(None), now_ms),
            (table.c.last_seen_ms < now_ms, now_ms),
            else_=table.c.last_seen_ms))
        .returning(table.c.store_id)
    )
    return {row.store_id for row in session.connection().execute(stmt)}


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
