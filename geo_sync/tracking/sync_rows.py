"""Registry operations: events, claims with leases, finishing, retries, reaping.

Every change of sync state goes through ``_transition``: one conditional UPDATE
whose WHERE names the allowed source states (see ``states.SYNC_TRANSITIONS``),
so two processes racing for the same row cannot both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from geo_sync.db import is_postgres, utcnow
from geo_sync.errors import GeoSyncError, MissingOnPrimary
from geo_sync.logging import get_logger
from geo_sync.tracking import blockers, states
from geo_sync.tracking.backoff import retry_delay
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState, VerificationState

log = get_logger("registry")


@dataclass(frozen=True)
class Claimed:
    """A row a worker holds: what to do, and the generation it was claimed at."""

    id: int
    record_id: str
    path: str
    mirror_path: str | None
    generation: int
    tombstone: bool
    expected_size: int | None
    expected_checksum: str | None
    #: The last verification found this copy wrong: rebuild it, do not patch it.
    fresh: bool = False


def _transition(conn: Connection, model: Registry, name: str, where: Any,
                **values: Any) -> list[int]:
    return states.apply_sync(conn, model, name, where, **values)


def insert_ignore(conn: Connection, model: Registry, rows: Sequence[dict[str, Any]]) -> int:
    """Insert registry rows whose record id is new; existing ones are left alone."""
    if not rows:
        return 0
    dialect = postgresql if is_postgres(conn.dialect) else sqlite
    stmt = dialect.insert(model).on_conflict_do_nothing(
        index_elements=["record_id"]
    ).returning(model.id)
    # Executemany form: SQLAlchemy's "insertmanyvalues" sends batched multi-row INSERTs
    # from one cached compilation (a .values(rows) statement is compiled anew each
    # time, which dominated the cursor's CPU). rowcount is -1 for batched inserts on
    # psycopg; count what came back.
    return len(conn.execute(stmt, list(rows)).all())


def new_row(record_id: str, path: str, *, size: int | None = None,
            checksum: str | None = None, tombstone: bool = False) -> dict[str, Any]:
    now = utcnow()
    return {
        "record_id": record_id, "path": path, **states.NEW_ROW,
        "generation": 1, "tombstone": tombstone, "retry_count": 0,
        "missing_on_primary": False, "expected_size": size, "expected_checksum": checksum,
        "created_at": now, "updated_at": now,
        "verification_retry_count": 0, "mismatch_count": 0,
    }


@dataclass(frozen=True)
class NetChange:
    """What a run of events did to one item: its last state, and how many events."""

    record_id: str
    path: str
    tombstone: bool
    size: int | None
    checksum: str | None
    events: int = 1


def note_changes(conn: Connection, model: Registry, changes: Sequence[NetChange]) -> None:
    """Apply events: create missing rows; bump the generation of existing ones by their
    event count and make them pending, in one INSERT and one batched UPDATE.

    A row a worker holds stays ``started``; the generation bump makes that worker's
    finish send it back to pending instead of marking it synced.
    """
    if not changes:
        return
    dialect = postgresql if is_postgres(conn.dialect) else sqlite
    # Most events on a busy site touch items already known: look them up first and
    # INSERT only the rest (an INSERT of rows that all conflict still costs the client
    # its parameter conversion and the server its conflict checks).
    known = set(conn.execute(select(model.record_id).where(
        model.record_id.in_([c.record_id for c in changes]))).scalars().all())
    rows = [new_row(c.record_id, c.path, size=c.size, checksum=c.checksum,
                    tombstone=c.tombstone) for c in changes if c.record_id not in known]
    inserted = set(conn.execute(
        dialect.insert(model)
        .on_conflict_do_nothing(index_elements=["record_id"]).returning(model.record_id),
        rows,  # executemany: see insert_ignore
    ).scalars().all()) if rows else set()
    # A row created by this run counts as one event; the rest of the run bumps it.
    params = [{"b_record_id": c.record_id, "b_path": c.path, "b_tombstone": c.tombstone,
               "b_size": c.size, "b_checksum": c.checksum,
               "b_events": c.events - (1 if c.record_id in inserted else 0)}
              for c in changes if c.record_id not in inserted or c.events > 1]
    if not params:
        return
    conn.execute(
        update(model)
        .where(model.record_id == bindparam("b_record_id"))
        .values(
            state=states.sync_state_after(model, "event"),
            generation=model.generation + bindparam("b_events"),
            path=bindparam("b_path"),
            tombstone=bindparam("b_tombstone"),
            expected_size=bindparam("b_size"),
            expected_checksum=bindparam("b_checksum"),
            missing_on_primary=False,
            retry_count=0,
            retry_at=None,
            enqueued_at=None,
            verification_state=states.verification_state_after(model, "reset"),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False),
        params,
    )


def claim(conn: Connection, model: Registry, ids: Sequence[int], worker: str,
          lease_seconds: float) -> list[Claimed]:
    """Take the still-pending rows among ``ids`` for ``worker`` with a lease."""
    if not ids:
        return []
    target = model.id.in_(list(ids))
    if is_postgres(conn.dialect):
        # Rows another worker is claiming right now are skipped, not waited for.
        target = model.id.in_(
            select(model.id).where(model.id.in_(list(ids)),
                                   model.state == SyncState.PENDING.value)
            .with_for_update(skip_locked=True).scalar_subquery()
        )
    claimed = _transition(conn, model, "claim", target, claimed_by=worker,
                          lease_until=utcnow() + timedelta(seconds=lease_seconds))
    if not claimed:
        return []
    rows = conn.execute(
        select(model.id, model.record_id, model.path, model.mirror_path, model.generation,
               model.tombstone, model.expected_size, model.expected_checksum,
               model.mismatch_count > 0)
        .where(model.id.in_(claimed)).order_by(model.id)
    ).all()
    return [Claimed(*row) for row in rows]


def heartbeat(conn: Connection, model: Registry, ids: Sequence[int], worker: str,
              lease_seconds: float) -> int:
    """Extend the lease of rows ``worker`` still holds."""
    if not ids:
        return 0
    return int(conn.execute(
        update(model)
        .where(model.id.in_(list(ids)), model.claimed_by == worker,
               model.state == SyncState.STARTED.value)
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    ).rowcount or 0)


def _held(model: Registry, item: Claimed, worker: str) -> Any:
    return and_(model.id == item.id, model.claimed_by == worker)


def finish_synced_many(conn: Connection, model: Registry, items: Sequence[Claimed],
                       worker: str) -> list[Claimed]:
    """Mark rows synced where no event arrived since their claim, in two statements;
    return the others (outdated: they go back to pending, or were not ours)."""
    if not items:
        return []
    now = utcnow()
    paths = case({item.id: item.path for item in items}, value=model.id)
    held = and_(model.id.in_([item.id for item in items]), model.claimed_by == worker)
    done = set(_transition(
        conn, model, "succeed",
        and_(held, tuple_(model.id, model.generation).in_(
            [(item.id, item.generation) for item in items])),
        claimed_by=None, lease_until=None, enqueued_at=None, retry_count=0, retry_at=None,
        last_error=None, last_synced_at=now, missing_on_primary=False, mirror_path=paths,
        blocked_on=None,
        verification_state=states.verification_state_after(model, "reset"),
    ))
    outdated = [item for item in items if item.id not in done]
    if outdated:
        _transition(conn, model, "outdated",
                    and_(held, model.id.in_([item.id for item in outdated])),
                    claimed_by=None, lease_until=None, enqueued_at=None, mirror_path=paths)
    return outdated


def finish_deleted(conn: Connection, model: Registry, item: Claimed, worker: str) -> bool:
    """The mirror's copy of a tombstoned row is gone: forget the row (if nothing changed)."""
    removed = conn.execute(
        delete(model).where(_held(model, item, worker), model.generation == item.generation,
                            model.tombstone.is_(True))
    ).rowcount
    if removed:
        return True
    _transition(conn, model, "outdated", _held(model, item, worker),
                claimed_by=None, lease_until=None, enqueued_at=None, mirror_path=None)
    return False


def finish_failed(conn: Connection, model: Registry, item: Claimed, worker: str,
                  error: BaseException, *, retry_cap: float, missing_cap: float) -> None:
    """Record the error and when to retry; an event meanwhile means retry at once."""
    missing = isinstance(error, MissingOnPrimary)
    # Unknown exceptions (OSError: disk full, say) may pass; our own errors say.
    retryable = missing or not isinstance(error, GeoSyncError) or error.retryable
    message = str(error) if isinstance(error, GeoSyncError) else f"{type(error).__name__}: {error}"
    count = conn.execute(select(model.retry_count).where(model.id == item.id)).scalar() or 0
    delay = retry_delay(count + 1, cap_seconds=missing_cap if missing else retry_cap)
    # A site-wide cause (primary down, disk full) does not count against the item: it
    # is retried as soon as the cause is gone (see retry_unblocked).
    blocked_on = blockers.blocker(error)
    if not retryable:
        # Retrying soon cannot help (bad credentials, an unsafe path): wait the cap, or
        # for an event or an operator's resync, whichever comes first.
        delay = timedelta(seconds=retry_cap)
        message = f"not retryable until fixed: {message}"
    outdated = _transition(
        conn, model, "outdated",
        and_(_held(model, item, worker), model.generation != item.generation),
        claimed_by=None, lease_until=None, enqueued_at=None,
    )
    if outdated:
        return
    _transition(
        conn, model, "fail", _held(model, item, worker),
        claimed_by=None, lease_until=None, enqueued_at=None,
        retry_count=model.retry_count + (0 if blocked_on else 1), retry_at=utcnow() + delay,
        last_error=message[:2000], missing_on_primary=missing, blocked_on=blocked_on,
    )
    log.warning("sync_failed", table=model.__tablename__, record_id=item.record_id,  # type: ignore[attr-defined]
                path=item.path, error=message[:500], retry_in=delay.total_seconds(),
                missing_on_primary=missing)


def release(conn: Connection, model: Registry, ids: Sequence[int], worker: str) -> list[int]:
    """Give rows back untouched (the worker is stopping before it reached them)."""
    return _transition(conn, model, "release",
                       and_(model.id.in_(list(ids)), model.claimed_by == worker),
                       claimed_by=None, lease_until=None, enqueued_at=None)


def release_expired(conn: Connection, model: Registry, now: datetime | None = None) -> list[int]:
    """Rows whose lease ran out (their worker died) go back to pending."""
    return _transition(
        conn, model, "expire",
        model.lease_until < (now or utcnow()),
        claimed_by=None, lease_until=None, enqueued_at=None,
        last_error="worker lease expired (worker died or hung); retrying",
    )


def held_paths(conn: Connection, model: Registry) -> list[str]:
    """Paths (old and new) of the rows a worker's lease holds now."""
    rows = conn.execute(select(model.path, model.mirror_path).where(
        model.state == SyncState.STARTED.value, model.lease_until >= utcnow())).all()
    return [path for row in rows for path in (row.path, row.mirror_path) if path]


def retry_unblocked(conn: Connection, model: Registry, blocked_on: str) -> list[int]:
    """Failed rows that ``blocked_on`` (a dependency that answers again) go back to
    pending now, whatever their retry time."""
    return _transition(conn, model, "retry", model.blocked_on == blocked_on,
                       retry_at=None, enqueued_at=None, blocked_on=None)


def blocked(conn: Connection, model: Registry, blocked_on: str) -> bool:
    """Whether any failed row waits for ``blocked_on``."""
    return conn.execute(select(model.id).where(
        model.state == SyncState.FAILED.value, model.blocked_on == blocked_on).limit(1)
    ).first() is not None


def blocked_counts(conn: Connection, model: Registry) -> dict[str, int]:
    """Failed rows per dependency they wait for."""
    return {str(blocker): int(count) for blocker, count in conn.execute(
        select(model.blocked_on, func.count())
        .where(model.state == SyncState.FAILED.value, model.blocked_on.is_not(None))
        .group_by(model.blocked_on)).all()}


def retry_due(conn: Connection, model: Registry, now: datetime | None = None) -> list[int]:
    """Failed rows whose retry time has come go back to pending."""
    return _transition(conn, model, "retry", model.retry_at <= (now or utcnow()),
                       enqueued_at=None)


def resync(conn: Connection, model: Registry, where: Any) -> list[int]:
    """Operator-requested resync: pending now, new generation, verification history reset."""
    return _transition(conn, model, "resync", where, generation=model.generation + 1,
                       retry_count=0, retry_at=None, enqueued_at=None, mismatch_count=0,
                       verification_state=states.verification_state_after(model, "reset"),
                       verification_retry_at=None)


def take_for_enqueue(conn: Connection, model: Registry, limit: int,
                     requeue_after: float) -> list[int]:
    """Pending rows to hand to workers, at most ``limit``, marked as enqueued now.

    A row enqueued longer than ``requeue_after`` ago whose message never led to a
    claim (lost with a Redis restart) is handed out again.
    """
    now = utcnow()
    in_flight = conn.execute(
        select(func.count()).select_from(model).where(or_(
            model.state == SyncState.STARTED.value,
            and_(model.state == SyncState.PENDING.value,
                 model.enqueued_at >= now - timedelta(seconds=requeue_after)),
        ))
    ).scalar_one()
    room = limit - in_flight
    if room <= 0:
        return []
    ids = conn.execute(
        select(model.id)
        .where(model.state == SyncState.PENDING.value,
               or_(model.enqueued_at.is_(None),
                   model.enqueued_at < now - timedelta(seconds=requeue_after)))
        .order_by(model.id).limit(room)
    ).scalars().all()
    if ids:
        conn.execute(update(model).where(model.id.in_(ids), model.state ==
                                         SyncState.PENDING.value).values(enqueued_at=now))
    return list(ids)


def counts(conn: Connection, model: Registry) -> dict[str, int]:
    """Rows per sync state, plus missing-on-primary and tombstones."""
    result = {state.value: 0 for state in SyncState}
    for state, number in conn.execute(
        select(model.state, func.count()).group_by(model.state)
    ).all():
        result[state] = number
    result["missing_on_primary"] = conn.execute(
        select(func.count()).where(model.missing_on_primary.is_(True))
    ).scalar_one()
    verification = dict(conn.execute(
        select(model.verification_state, func.count()).group_by(model.verification_state)
    ).all())
    result["verified"] = verification.get(VerificationState.SUCCEEDED, 0)
    result["verification_failed"] = verification.get(VerificationState.FAILED, 0)
    result["mismatched"] = conn.execute(
        select(func.count()).where(model.mismatch_count > 0)).scalar_one()
    result["total"] = sum(result[state.value] for state in SyncState)
    return result
