"""Publishing a change: one event row plus the matching catalog change, in the
caller's own transaction, so the event exists if and only if the change committed.

On PostgreSQL the write is the ``geo_publish()`` SQL function (migration 0003), the
same one CI systems in other languages call; on SQLite it is done here. Both apply
these rules, with word-for-word equal messages:

* A path belongs to one record at a time: giving a path another record holds is
  refused (SQLSTATE 22023, naming both records) until that record is deleted or
  renamed away.
* ``created``/``updated``/``appended``/``archived`` upsert the catalog row of
  ``record_id`` (default: the path). Size and checksum are replaced by what the
  caller sends: an unknown checksum is stored as unknown, never left stale.
* ``renamed`` moves the row found by ``record_id`` or ``old_path`` to ``path``.
* ``deleted`` removes exactly one catalogued item, which must be at ``path``: a
  delete of anything the catalog does not hold is refused, since every secondary
  would remove whatever lies at that path.

Every argument is validated before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from geo_sync.db import is_postgres, utcnow
from geo_sync.errors import InvalidInput, UnsafePath
from geo_sync.paths import CONTROL, utf8_length
from geo_sync.primary.data_types import require_accepted
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.primary.publish_rules import from_sqlstate, refuse
from geo_sync.primary.site_state import check_writable
from geo_sync.primary.site_state import from_sqlstate as read_only_from_sqlstate
from replicators.type_map import original_for

NOTIFY_CHANNEL = "geo_sync_events"
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
#: Sizes are stored as BIGINT.
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True)
class Change:
    """One change to publish. ``old_path`` is only for ``renamed``."""

    replicable_type: str
    event: str
    path: str
    record_id: str | None = None
    size: int | None = None
    checksum: str | None = None
    old_path: str | None = None


def validate_change(change: Change) -> Change:
    """Return ``change`` if every field is acceptable; raise InvalidInput naming the bad one."""
    replicator = original_for(change.replicable_type)
    replicator.validate_event(change.event)
    replicator.validate_path(change.path)
    if change.record_id is not None and not _valid_record_id(change.record_id):
        raise refuse("bad_record_id")
    if change.size is not None and (
        not isinstance(change.size, int) or isinstance(change.size, bool)
        or not 0 <= change.size <= MAX_SIZE
    ):
        raise InvalidInput(f"size must be an integer from 0 to {MAX_SIZE}, "
                           f"got {str(change.size)[:40]!r}")
    if change.checksum is not None and (
        not isinstance(change.checksum, str) or not _CHECKSUM.fullmatch(change.checksum)
    ):
        raise refuse("bad_checksum")
    if change.old_path is not None:
        if change.event != "renamed":
            raise refuse("old_path_not_renamed")
        replicator.validate_path(change.old_path, field="old_path")
    if change.event == "renamed" and change.record_id is None and change.old_path is None:
        raise refuse("rename_without_source")
    return change


def _valid_record_id(record_id: object) -> bool:
    if not isinstance(record_id, str) or CONTROL.search(record_id):
        return False
    try:
        return 0 < utf8_length(record_id, "record_id") <= 255
    except UnsafePath:
        return False


def publish(conn: Connection, change: Change, *, accepted_push: bool = False) -> int:
    """Validate and record ``change`` in the caller's transaction; return the event id.

    On SQLite, run this in a transaction started with ``BEGIN IMMEDIATE``
    (``geo_sync.db.write_transaction``) so concurrent publishers queue for the
    write lock instead of failing.

    ``accepted_push``: a push the git server took before maintenance mode began (the
    push spool); it is published during maintenance, never on a demoted site.
    """
    validate_change(change)
    if is_postgres(conn.dialect):
        if accepted_push:  # read by the trigger of 0006, until the transaction ends
            conn.execute(text("SET LOCAL geo_sync.accepted_push = 'on'"))
        return _publish_postgres(conn, change)
    return _publish_portable(conn, change, accepted_push)


def _publish_postgres(conn: Connection, change: Change) -> int:
    try:
        with conn.begin_nested():
            event_id = conn.execute(
                text(
                    "SELECT geo_publish(:type, :event, :path, :record_id, :size, "
                    ":checksum, :old_path)"
                ),
                {
                    "type": change.replicable_type,
                    "event": change.event,
                    "path": change.path,
                    "record_id": change.record_id,
                    "size": change.size,
                    "checksum": change.checksum,
                    "old_path": change.old_path,
                },
            ).scalar_one()
    except DBAPIError as exc:
        raise _translate(exc) from None
    return int(event_id)


def _translate(exc: DBAPIError) -> Exception:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    message = str(getattr(getattr(exc.orig, "diag", None), "message_primary", "") or exc.orig)
    return (from_sqlstate(sqlstate, message) or read_only_from_sqlstate(sqlstate, message)
            or exc)


def _row(conn: Connection, type_name: str, *where: Any) -> Any:
    return conn.execute(
        select(CatalogItem.id, CatalogItem.record_id, CatalogItem.path)
        .where(CatalogItem.replicable_type == type_name, *where)
    ).first()


def _find(conn: Connection, change: Change, by_path: str) -> Any:
    key = (
        CatalogItem.record_id == change.record_id
        if change.record_id is not None
        else CatalogItem.path == by_path
    )
    return _row(conn, change.replicable_type, key)


def _delete_row(conn: Connection, change: Change) -> str:
    kind = change.replicable_type
    row = _find(conn, change, change.path)
    if row is None:
        raise refuse("delete_unknown", type=kind, item=change.record_id or change.path)
    if row.path != change.path:
        raise refuse("delete_elsewhere", type=kind, record=row.record_id, at=row.path,
                     path=change.path)
    conn.execute(delete(CatalogItem).where(CatalogItem.id == row.id))
    return str(row.record_id)


def _rename_row(conn: Connection, change: Change, now: Any) -> tuple[str, str]:
    kind = change.replicable_type
    row = _find(conn, change, change.old_path or "")
    if row is None:
        raise refuse("rename_unknown", type=kind, item=change.record_id or change.old_path)
    if change.old_path is not None and row.path != change.old_path:
        raise refuse("rename_elsewhere", type=kind, record=row.record_id, at=row.path,
                     path=change.old_path)
    other = _row(conn, kind, CatalogItem.path == change.path, CatalogItem.id != row.id)
    if other is not None:
        raise refuse("path_taken", type=kind, path=change.path, owner=other.record_id,
                     record=row.record_id)
    conn.execute(update(CatalogItem).where(CatalogItem.id == row.id)
                 .values(path=change.path, updated_at=now))
    return str(row.record_id), str(row.path)


def _upsert_row(conn: Connection, change: Change, now: Any) -> str:
    kind = change.replicable_type
    row = _find(conn, change, change.path)
    record_id = row.record_id if row is not None else change.record_id or change.path
    if row is None and change.record_id is None:
        # The record id defaults to the path: is that record elsewhere?
        row = _row(conn, kind, CatalogItem.record_id == record_id)
    values = {
        "size": change.size,
        "checksum": change.checksum,
        "checksum_at": now if change.checksum else None,
        "updated_at": now,
    }
    if row is None:
        other = _row(conn, kind, CatalogItem.path == change.path)
        if other is not None:
            raise refuse("path_taken", type=kind, path=change.path, owner=other.record_id,
                         record=record_id)
        conn.execute(insert(CatalogItem).values(
            replicable_type=kind, record_id=record_id, path=change.path, **values))
    elif row.path != change.path:
        raise refuse("upsert_elsewhere", type=kind, record=row.record_id, at=row.path,
                     path=change.path)
    else:
        conn.execute(update(CatalogItem).where(CatalogItem.id == row.id).values(**values))
    return str(record_id)


def _publish_portable(conn: Connection, change: Change, accepted_push: bool) -> int:
    check_writable(conn, accepted_push=accepted_push)  # PostgreSQL: 0006's trigger
    require_accepted(conn, change.replicable_type, change.event)
    now = utcnow()
    old_path: str | None = None
    if change.event == "deleted":
        record_id = _delete_row(conn, change)
    elif change.event == "renamed":
        record_id, old_path = _rename_row(conn, change, now)
    else:
        record_id = _upsert_row(conn, change, now)
    payload = {
        key: value
        for key, value in (("size", change.size), ("checksum", change.checksum),
                           ("old_path", old_path))
        if value is not None
    }
    return int(
        conn.execute(
            insert(Event)
            .values(
                replicable_type=change.replicable_type,
                event=change.event,
                record_id=record_id,
                path=change.path,
                payload=payload,
                created_at=now,
            )
            .returning(Event.id)
        ).scalar_one()
    )

