"""Applying the primary's events to a registry: the net effect of a page per item.

An event creates the item's row if it is new; otherwise it bumps the row's
generation by the number of events, carries the item's new path, size and
checksum, and makes the row pending (transition ``event``: a started row keeps
its worker, whose finish then sees the new generation) with its verification
reset. ``EVENT_COLUMNS`` and ``_on_event`` are the one place that says what an
event writes; both ways of applying it use them:

- PostgreSQL: one ``INSERT … SELECT FROM jsonb_to_recordset(page) ON CONFLICT DO
  UPDATE`` per registry and page. The page is one JSON parameter and the statement
  is built, compiled and prepared once (a multi-row VALUES statement was parsed anew
  each page: 37 % of the cursor's time; one array parameter per column cost
  psycopg's Python array dumpers 15 %).
- Anything else (SQLite, embedded): a lookup of the known ids, an executemany
  INSERT of the new ones and an executemany UPDATE of the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    column,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.types import TypeEngine

from geo_sync.db import UTCDateTime, is_postgres, utcnow
from geo_sync.tracking import states
from geo_sync.tracking.models import Registry
from geo_sync.tracking.sync_rows import new_row


@dataclass(frozen=True)
class NetChange:
    """What a run of events did to one item: its last state, and how many events."""

    record_id: str
    path: str
    tombstone: bool
    size: int | None
    checksum: str | None
    events: int = 1
    #: When the primary committed the last of these events (per-item lag).
    committed_at: datetime | None = None


#: The registry columns an event carries from the primary, with the NetChange field and
#: the column's type (PostgreSQL binds each as an array of it). A new per-item column
#: the cursor writes is one more entry here.
EVENT_COLUMNS: dict[str, tuple[str, TypeEngine[Any]]] = {
    "path": ("path", Text()),
    "tombstone": ("tombstone", Boolean()),
    "expected_size": ("size", BigInteger()),
    "expected_checksum": ("checksum", String(64)),
    "change_committed_at": ("committed_at", UTCDateTime()),
}


def _on_event(model: Registry, carried: Mapping[str, Any], events: Any, now: Any
              ) -> dict[str, Any]:
    """What an event sets on a row that exists: ``carried`` gives the value of each
    EVENT_COLUMNS column, ``events`` how many events the run had."""
    return {
        **carried,
        "state": states.sync_state_after(model, "event"),
        "generation": model.generation + events,
        "missing_on_primary": False,
        "retry_count": 0,
        "retry_at": None,
        "enqueued_at": None,
        "verification_state": states.verification_state_after(model, "reset"),
        # A new change: its copy is neither synced nor verified yet (per-item lag).
        "change_synced_at": None,
        "change_verified_at": None,
        "updated_at": now,
    }


def note_changes(conn: Connection, model: Registry, changes: Sequence[NetChange]) -> None:
    """Apply the net effect of a run of events to ``model`` (at most one change per
    record id): rows created or bumped, as the module docstring says."""
    if not changes:
        return
    if is_postgres(conn.dialect):
        _upsert_json(conn, model, changes)
    else:
        note_changes_portable(conn, model, changes)


def _upsert_json(conn: Connection, model: Registry, changes: Sequence[NetChange]) -> None:
    """One statement: a new row is inserted at generation = its event count, a known
    one gets ``_on_event`` (its generation bumped by that count).

    The page travels as one JSON document (``jsonb_to_recordset``): json.dumps
    encodes it in C, where psycopg's array dumpers, one array per column, took
    about 15 % of the cursor's time. The statement is built once per registry."""
    fields = [(name, field) for name, (field, _) in EVENT_COLUMNS.items()]
    document = json.dumps([
        {"record_id": c.record_id, "generation": c.events,
         **{name: getattr(c, field) for name, field in fields}}
        for c in changes], separators=(",", ":"), default=_json_value)
    conn.execute(_upsert_statement(model), {"u_rows": document, "u_now": utcnow()})


_UPSERTS: dict[str, Insert] = {}


def _upsert_statement(model: Registry) -> Insert:
    """The upsert ``_upsert_json`` runs, with ``u_rows`` (the JSON document) and
    ``u_now`` to bind: built once per registry."""
    table = model.__tablename__  # type: ignore[attr-defined]
    if table not in _UPSERTS:
        _UPSERTS[table] = _build_upsert(model)
    return _UPSERTS[table]


def _build_upsert(model: Registry) -> Insert:
    columns: dict[str, TypeEngine[Any]] = {
        "record_id": String(255),
        **{name: kind for name, (_, kind) in EVENT_COLUMNS.items()},
        "generation": Integer(),
    }
    rows = func.jsonb_to_recordset(
        cast(bindparam("u_rows", type_=Text()), postgresql.JSONB)
    ).table_valued(*(column(name, kind) for name, kind in columns.items())
                   ).render_derived(with_types=True)
    now = bindparam("u_now", type_=UTCDateTime())
    # Every other column as a row created by the portable path has it.
    template = new_row("", "")
    constants = {name: literal(value, type_=model.__table__.c[name].type)  # type: ignore[attr-defined]
                 for name, value in template.items()
                 if name not in columns and name not in ("created_at", "updated_at")}
    names = [*columns, *constants, "created_at", "updated_at"]
    stmt = postgresql.insert(model).from_select(
        names, select(*(rows.c[name] for name in columns), *constants.values(), now, now))
    return stmt.on_conflict_do_update(
        index_elements=["record_id"],
        set_=_on_event(model, {name: stmt.excluded[name] for name in EVENT_COLUMNS},
                       stmt.excluded.generation, stmt.excluded.updated_at),
    )


def _json_value(value: object) -> object:
    """What json.dumps cannot encode itself: timestamps, in ISO 8601 with their offset."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def note_changes_portable(conn: Connection, model: Registry, changes: Sequence[NetChange]
                          ) -> None:
    """The same effect on any backend: create missing rows, then bump the generation of
    the others by their event count, in one INSERT and one executemany UPDATE."""
    if not changes:
        return
    dialect = postgresql if is_postgres(conn.dialect) else sqlite
    # Most events on a busy site touch items already known: look them up first and
    # INSERT only the rest (an INSERT of rows that all conflict still costs the client
    # its parameter conversion and the server its conflict checks).
    known = set(conn.execute(select(model.record_id).where(
        model.record_id.in_([c.record_id for c in changes]))).scalars().all())
    rows = [new_row(c.record_id, c.path, size=c.size, checksum=c.checksum,
                    tombstone=c.tombstone, committed_at=c.committed_at)
            for c in changes if c.record_id not in known]
    # executemany: SQLAlchemy's "insertmanyvalues" sends batched multi-row INSERTs from
    # one cached compilation.
    inserted = set(conn.execute(
        dialect.insert(model)
        .on_conflict_do_nothing(index_elements=["record_id"]).returning(model.record_id),
        rows,
    ).scalars().all()) if rows else set()
    # A row created by this run counts as one event; the rest of the run bumps it.
    params = [{"b_record_id": c.record_id, "b_events": c.events - (c.record_id in inserted),
               **{f"b_{name}": getattr(c, field)
                  for name, (field, _) in EVENT_COLUMNS.items()}}
              for c in changes if c.record_id not in inserted or c.events > 1]
    if not params:
        return
    conn.execute(
        update(model)
        .where(model.record_id == bindparam("b_record_id"))
        .values(_on_event(model, {name: bindparam(f"b_{name}") for name in EVENT_COLUMNS},
                          bindparam("b_events"), utcnow()))
        .execution_options(synchronize_session=False),
        params,
    )
