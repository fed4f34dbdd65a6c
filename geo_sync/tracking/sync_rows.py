"""Registry operations: events, claims with leases, finishing, retries, reaping.

Every change of sync state goes through ``_transition``: one conditional UPDATE
whose WHERE names the allowed source states (see ``states.SYNC_TRANSITIONS``),
so two processes racing for the same row cannot both win.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import Grouping

from geo_sync.db import is_postgres, utcnow
from geo_sync.errors import GeoSyncError, MissingOnPrimary
from geo_sync.logging import get_logger
from geo_sync.tracking import blockers, row_counts, states
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


def ids_in(conn: Connection, model: Registry, ids: Sequence[int]) -> Any:
    """``model.id IN ids``; on PostgreSQL as ``= ANY(array)``, one parameter: for a
    batch's IN list of hundreds of parameters psycopg parsed a long statement anew
    each time (14 % of a small-blob worker's time under cProfile)."""
    if is_postgres(conn.dialect):
        return model.id == any_(bindparam("ids", list(ids), type_=ARRAY(BigInteger),
                                          unique=True))
    return model.id.in_(list(ids))


def per_row(conn: Connection, model: Registry, values: Mapping[int, Any], value_type: Any,
            else_: Any = None) -> Any:
    """The value ``values`` gives the row's id (``else_`` for others), for one UPDATE of
    many rows; on PostgreSQL two array parameters instead of a CASE of hundreds."""
    if is_postgres(conn.dialect):
        ids = bindparam("row_ids", list(values), type_=ARRAY(BigInteger), unique=True)
        array = bindparam("row_values", list(values.values()), type_=ARRAY(value_type),
                          unique=True)
        # Parenthesised, or PostgreSQL reads $1::TEXT[][i] as a two-dimensional type.
        found = type_coerce(Grouping(array), ARRAY(value_type))[
            func.array_position(ids, model.id)]
        return found if else_ is None else func.coalesce(found, else_)
    return case(dict(values), value=model.id, else_=else_)


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
            checksum: str | None = None, tombstone: bool = False,
            committed_at: datetime | None = None) -> dict[str, Any]:
    now = utcnow()
    return {
        "record_id": record_id, "path": path, **states.NEW_ROW,
        "generation": 1, "tombstone": tombstone, "retry_count": 0,
        "missing_on_primary": False, "expected_size": size, "expected_checksum": checksum,
        "created_at": now, "updated_at": now,
        "verification_retry_count": 0, "mismatch_count": 0,
        "change_committed_at": committed_at,
    }


def claim(conn: Connection, model: Registry, ids: Sequence[int], worker: str,
          lease_seconds: float) -> list[Claimed]:
    """Take the still-pending rows among ``ids`` for ``worker`` with a lease."""
    if not ids:
        return []
    target = ids_in(conn, model, ids)
    if is_postgres(conn.dialect):
        # Rows another worker is claiming right now are skipped, not waited for.
        target = model.id.in_(
            select(model.id).where(target, model.state == SyncState.PENDING.value)
            .with_for_update(skip_locked=True).scalar_subquery()
        )
    # A first copy is written at the row's path: record that before any byte lands, so a
    # worker that dies after its copy landed but before it finished leaves the row saying
    # where that copy is (a rename meanwhile then moves it instead of orphaning it).
    claimed = _transition(conn, model, "claim", target, claimed_by=worker,
                          lease_until=utcnow() + timedelta(seconds=lease_seconds),
                          mirror_path=func.coalesce(model.mirror_path, model.path))
    if not claimed:
        return []
    rows = conn.execute(
        select(model.id, model.record_id, model.path, model.mirror_path, model.generation,
               model.tombstone, model.expected_size, model.expected_checksum,
               model.mismatch_count > 0)
        .where(ids_in(conn, model, claimed)).order_by(model.id)
    ).all()
    return [Claimed(*row) for row in rows]


def claim_next(conn: Connection, model: Registry, limit: int, worker: str,
               lease_seconds: float) -> list[Claimed]:
    """Take up to ``limit`` pending rows, lowest id first, whether or not a message for
    them is on its way (that message then finds them taken and does nothing): a worker
    that finished its rows goes on with the next ones without waiting for the scheduler."""
    ids = select(model.id).where(model.state == SyncState.PENDING.value).order_by(
        model.id).limit(limit)
    if is_postgres(conn.dialect):
        ids = ids.with_for_update(skip_locked=True)
    return claim(conn, model, list(conn.execute(ids).scalars().all()), worker,
                 lease_seconds)


def copy_moved(conn: Connection, model: Registry, item: Claimed) -> None:
    """The copy that was at ``item.mirror_path`` is now at ``item.path`` (a rename moved
    it): record it at once, not when the transfer that follows finishes, which a crash
    may cut short (a later rename would then look for the copy where it no longer is)."""
    conn.execute(update(model).where(model.id == item.id,
                                     model.mirror_path == item.mirror_path)
                 .values(mirror_path=item.path))


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


def _verification_on_arrival(conn: Connection, model: Registry,
                             arrivals: Mapping[int, tuple[str, str]], now: datetime
                             ) -> dict[str, Any]:
    """Column values for finishing rows of which those in ``arrivals`` (id -> sha256
    and fingerprint) were verified on arrival: the verifier's success, recorded without
    a second fetch and hash; the other rows' verification starts over as usual."""
    reset = states.verification_state_after(model, "reset")
    if not arrivals:
        return {"verification_state": reset}
    arrived = ids_in(conn, model, list(arrivals))

    def from_arrival(index: int, column: Any) -> Any:
        return per_row(conn, model, {row: value[index] for row, value in arrivals.items()},
                       Text, column)

    def if_arrived(value: Any, column: Any) -> Any:
        return case((arrived, value), else_=column)

    return {
        "verification_state": case(
            (arrived, states.verification_state_after(model, "arrive_verified")),
            else_=reset),
        "verification_checksum": from_arrival(0, model.verification_checksum),
        "verification_expected": from_arrival(0, model.verification_expected),
        "verified_fingerprint": from_arrival(1, model.verified_fingerprint),
        "verified_at": if_arrived(now, model.verified_at),
        "change_verified_at": if_arrived(func.coalesce(model.change_verified_at, now),
                                         model.change_verified_at),
        "verification_error": if_arrived(None, model.verification_error),
        "verification_retry_count": if_arrived(0, model.verification_retry_count),
        "verification_retry_at": if_arrived(None, model.verification_retry_at),
        "mismatch_count": if_arrived(0, model.mismatch_count),
    }


def finish_synced_many(conn: Connection, model: Registry, items: Sequence[Claimed],
                       worker: str, arrivals: Mapping[int, tuple[str, str]] | None = None
                       ) -> list[Claimed]:
    """Mark rows synced where no event arrived since their claim, in two statements;
    return the others (outdated: they go back to pending, or were not ours). Rows in
    ``arrivals`` (id -> sha256 and fingerprint) were verified as they arrived."""
    if not items:
        return []
    now = utcnow()
    paths = per_row(conn, model, {item.id: item.path for item in items}, Text)
    held = and_(ids_in(conn, model, [item.id for item in items]),
                model.claimed_by == worker)
    generations = per_row(conn, model, {item.id: item.generation for item in items},
                          BigInteger)
    done = set(_transition(
        conn, model, "succeed",
        and_(held, model.generation == generations),
        claimed_by=None, lease_until=None, enqueued_at=None, retry_count=0, retry_at=None,
        last_error=None, last_synced_at=now, missing_on_primary=False, mirror_path=paths,
        blocked_on=None, change_synced_at=func.coalesce(model.change_synced_at, now),
        **_verification_on_arrival(conn, model, arrivals or {}, now),
    ))
    outdated = [item for item in items if item.id not in done]
    if outdated:
        _transition(conn, model, "outdated",
                    and_(held, ids_in(conn, model, [item.id for item in outdated])),
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
                     requeue_after: float, now: datetime | None = None) -> list[int]:
    """Pending rows to hand to workers, at most ``limit`` in flight, marked as enqueued
    now; in id order.

    A row enqueued longer than ``requeue_after`` ago whose message never led to a
    claim (lost with a Redis restart) is handed out again. One statement: the room
    left under the limit, the rows and their marking (a pass runs this per type).
    """
    now = now or utcnow()
    recent = now - timedelta(seconds=requeue_after)
    pending = states.constant(SyncState.PENDING)
    # Two bounded counts (rows in flight), each from its own index: an OR of the two
    # made PostgreSQL read every pending row.
    in_flight = (
        select(func.count()).where(model.state == states.constant(SyncState.STARTED))
        .scalar_subquery()
        + select(func.count()).where(model.state == pending, model.enqueued_at >= recent)
        .scalar_subquery())
    # In id order along ix_state_id: the rows it passes over are the ones in flight.
    due = (select(model.id)
           .where(model.state == pending,
                  or_(model.enqueued_at.is_(None), model.enqueued_at < recent))
           .order_by(model.id).limit(room_under(conn, limit, in_flight)))
    return sorted(conn.execute(
        update(model).where(among(conn, model, due), model.state == pending)
        .values(enqueued_at=now).returning(model.id)).scalars().all())


def among(conn: Connection, model: Registry, ids: Select[int]) -> Any:
    """``model.id`` is one of the ids ``ids`` selects. On PostgreSQL as ``= ANY(ARRAY(…))``:
    an IN over a subquery whose LIMIT is an expression was planned as a hash join over
    every pending row; the array makes it one index lookup per id."""
    if is_postgres(conn.dialect):
        return model.id == any_(type_coerce(func.array(ids.scalar_subquery()), ARRAY(Integer)))
    return model.id.in_(ids.scalar_subquery())


def room_under(conn: Connection, limit: int, in_flight: Any) -> Any:
    """``limit - in_flight``, never below 0, as SQL for a LIMIT (a negative LIMIT is an
    error on PostgreSQL and no limit at all on SQLite)."""
    larger = func.greatest if is_postgres(conn.dialect) else func.max
    return larger(literal(limit, type_=BigInteger, literal_execute=True) - in_flight,
                  literal(0, type_=BigInteger, literal_execute=True))


def counts(conn: Connection, model: Registry) -> dict[str, int]:
    """Rows per sync state, plus missing-on-primary, verified, verification failed and
    mismatched: from the counts the triggers keep and two partial indexes, so the cost
    does not grow with the table."""
    result = {state.value: 0 for state in SyncState}
    verification: Counter[str] = Counter()
    for (state, verification_state), number in row_counts.counts(
            conn, model.__tablename__).items():  # type: ignore[attr-defined]
        result[state] = result.get(state, 0) + number
        verification[verification_state] += number
    # The bare column, as ix_<registry>_missing says it (not IS true).
    result["missing_on_primary"] = conn.execute(
        select(func.count()).where(model.missing_on_primary)
    ).scalar_one()
    result["verified"] = verification[VerificationState.SUCCEEDED]
    result["verification_failed"] = verification[VerificationState.FAILED]
    result["mismatched"] = conn.execute(select(func.count()).where(
        model.mismatch_count > literal(0, literal_execute=True))).scalar_one()
    result["total"] = sum(result[state.value] for state in SyncState)
    return result
