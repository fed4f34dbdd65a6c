"""One scheduler pass's registry work in one statement per purpose, for every type.

A pass used to run, per registry type and in one transaction each, the steps of
``sync_rows`` (lapsed leases back to pending, failed rows whose retry came back to
pending, pending rows handed out) and of ``verification_rows`` (lapsed
verifications, disabled rows to retry, the paced re-verification's oldest rows,
due rows handed out): ten statements and their BEGIN/COMMIT at about 1.5 ms each
on PostgreSQL, whatever the work (docs/benchmarks.md, "Scheduler pass at scale").

On PostgreSQL ``take_sync_work`` and ``take_verification_work`` are one statement
each: data-modifying CTEs, one per transition and type, whose UPDATEs come from
``states.sync_update`` and ``states.verification_update`` (the transitions stay
defined in one place). Every CTE sees the same snapshot, not the rows an earlier one
moved, so the statement does what the steps did one after the other by asking it
outright: a row whose lease lapsed (or whose retry came) is handed out in the same
pass if the room under the limit reaches it, its marking written by the transition
that moves it; each row is written by one CTE at most (the transitions' source
states do not overlap). The statements are built once per set of types and cached;
the times and limits are bound parameters, and they are planned once (generic plans,
``_generic_plans``). Each is atomic on its own, so the pass runs them on an autocommit
connection (``connect``): no BEGIN or COMMIT round trip.

SQLite cannot UPDATE in a CTE; there the steps run one after the other in one write
transaction, as before (its statements cost no round trip).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from geo_sync.db import UTCDateTime, is_postgres, utcnow, write_on
from geo_sync.tracking import row_counts, states, sync_rows, verification_rows
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState, VerificationState

#: Why a lapsed lease's row went back to pending (as ``sync_rows.release_expired``).
LEASE_EXPIRED = "worker lease expired (worker died or hung); retrying"


@dataclass(frozen=True)
class SyncAsk:
    """What a pass asks of one registry's sync side: at most ``limit`` rows in flight.
    ``started``, ``failed`` and ``pending``: whether its counts show rows in those
    states (a step with none is skipped where steps run one by one)."""

    model: Registry
    limit: int
    started: bool = True
    failed: bool = True
    pending: bool = True


@dataclass(frozen=True)
class SyncWork:
    """What the sync side of a pass did to one registry: the rows whose lease lapsed,
    the failed rows retried (both back to pending) and the rows handed out, in id order."""

    expired: list[int]
    retried: list[int]
    taken: list[int]


@dataclass(frozen=True)
class VerifyAsk:
    """What a pass asks of one registry's verification side: at most ``limit`` rows
    being verified, ``budget`` rows sent to re-verification. ``started``, ``disabled``,
    ``due``: whether its counts show rows being verified, disabled, due."""

    model: Registry
    limit: int
    budget: int
    started: bool = True
    disabled: bool = True
    due: bool = True


#: ``Connection.info`` key: the pass's connection plans with generic plans (see ``connect``).
_GENERIC = "geo_sync_generic_plans"


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """The pass's one connection: in autocommit on PostgreSQL, where every statement
    here is atomic on its own; a plain one on SQLite (its writes take a transaction).
    A pass with work plans its two statements with the generic plans of their prepared
    statements (``_generic_plans``) and goes back to the default when it ends, as the
    connection goes back to the pool."""
    with engine.connect() as conn:
        if is_postgres(engine):
            conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
        finally:
            if conn.info.pop(_GENERIC, False) and not conn.invalidated:
                conn.exec_driver_sql("RESET plan_cache_mode")


def _generic_plans(conn: Connection) -> None:
    """Plan the pass's statements once (psycopg prepares a statement run five times),
    not at every execution: PostgreSQL kept choosing custom plans for them, and planning
    them took 1.2 ms of the 2.7 ms they cost at 1,000,000 rows. Their plans do not
    depend on the parameters' values (the states they look for are constants, which
    the partial indexes need; times and limits bound a range or stop a walk)."""
    if not conn.info.get(_GENERIC):
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.info[_GENERIC] = True


def counts(conn: Connection) -> row_counts.Snapshot:
    """The registries' counts (``row_counts.snapshot``) that decide what the pass asks,
    its read transaction ended (SQLite: a later read sees later writes)."""
    counted = row_counts.snapshot(conn)
    conn.commit()
    return counted


def _table(model: Registry) -> str:
    return str(model.__tablename__)  # type: ignore[attr-defined]


def take_sync_work(conn: Connection, asks: Sequence[SyncAsk], requeue_after: float,
                   now: datetime | None = None) -> dict[str, SyncWork]:
    """Lapsed leases and due retries back to pending, then pending rows handed out (at
    most each ask's limit in flight; a row handed out longer than ``requeue_after``
    ago that nobody claimed is handed out again): per registry table."""
    if not asks:
        return {}
    now = now or utcnow()
    if not is_postgres(conn.dialect):
        return _sync_steps(conn, asks, requeue_after, now)
    _generic_plans(conn)
    params: dict[str, Any] = {"now": now, "recent": now - timedelta(seconds=requeue_after)}
    params.update({f"limit_{n}": ask.limit for n, ask in enumerate(asks)})
    work = {_table(ask.model): SyncWork([], [], []) for ask in asks}
    for n, kind, row_id, taken in conn.execute(
            _sync_statement(tuple(ask.model for ask in asks)), params):
        done = work[_table(asks[n].model)]
        getattr(done, kind).append(row_id)
        if taken and kind != "taken":
            done.taken.append(row_id)
    for done in work.values():
        for ids in (done.expired, done.retried, done.taken):
            ids.sort()
    return work


def _sync_steps(conn: Connection, asks: Sequence[SyncAsk], requeue_after: float,
                now: datetime) -> dict[str, SyncWork]:
    """``take_sync_work`` one step after another, in one write transaction."""
    work = {}
    with write_on(conn):
        for ask in asks:
            expired = sync_rows.release_expired(conn, ask.model, now) if ask.started else []
            retried = sync_rows.retry_due(conn, ask.model, now) if ask.failed else []
            taken = (sync_rows.take_for_enqueue(conn, ask.model, ask.limit, requeue_after, now)
                     if ask.pending or expired or retried else [])
            work[_table(ask.model)] = SyncWork(sorted(expired), sorted(retried), taken)
    return work


def take_verification_work(conn: Connection, asks: Sequence[VerifyAsk],
                           requeue_after: float, reverify_after: float,
                           now: datetime | None = None) -> dict[str, list[int]]:
    """Lapsed verifications, disabled rows whose retry came and each ask's budget of
    the oldest verified rows (``reverify_after``: the re-verification window) back to
    pending, then due rows handed out (at most each ask's limit being verified; not
    again for ``requeue_after`` seconds): the ids handed out, per registry table."""
    if not asks:
        return {}
    now = now or utcnow()
    if not is_postgres(conn.dialect):
        return _verification_steps(conn, asks, requeue_after, reverify_after, now)
    _generic_plans(conn)
    params: dict[str, Any] = {
        "now": now, "requeue_at": now + timedelta(seconds=requeue_after),
        "cutoff": now - timedelta(seconds=reverify_after / 2)}
    for n, ask in enumerate(asks):
        params.update({f"limit_{n}": ask.limit, f"budget_{n}": max(ask.budget, 0)})
    work: dict[str, list[int]] = {_table(ask.model): [] for ask in asks}
    for n, row_id in conn.execute(
            _verification_statement(tuple(ask.model for ask in asks)), params):
        work[_table(asks[n].model)].append(row_id)
    return {table: sorted(ids) for table, ids in work.items()}


def _verification_steps(conn: Connection, asks: Sequence[VerifyAsk], requeue_after: float,
                        reverify_after: float, now: datetime) -> dict[str, list[int]]:
    """``take_verification_work`` one step after another, in one write transaction."""
    work = {}
    with write_on(conn):
        for ask in asks:
            moved = []
            if ask.started:
                moved += verification_rows.release_expired(conn, ask.model, now)
            if ask.disabled:
                moved += verification_rows.retry_disabled(conn, ask.model, now)
            if ask.budget > 0:
                moved += verification_rows.reverify_due(conn, ask.model, reverify_after,
                                                        ask.budget, now)
            work[_table(ask.model)] = (
                verification_rows.take_for_verify(conn, ask.model, ask.limit, requeue_after,
                                                  now)
                if ask.due or moved else [])
    return work


# -- PostgreSQL: one statement per purpose ---------------------------------------------

def _now() -> Any:
    return bindparam("now", type_=UTCDateTime())


def _written(number: int) -> Any:
    """A number written into the statement (the same in every execution)."""
    return literal(number, BigInteger, literal_execute=True)


def _count(*where: Any) -> Any:
    return select(func.count()).where(*where).scalar_subquery()


def _room(limit: Any, in_flight: Any, name: str) -> Any:
    """``limit - in_flight``, never below 0, computed once (a CTE)."""
    room = select(func.greatest(limit - in_flight, _written(0)).label("n")).cte(name)
    return select(room.c.n).scalar_subquery()


def _first(waiting: Sequence[Any], moved: Sequence[Sequence[Any]], model: Registry,
           room: Any, name: str) -> Any:
    """The ``room`` lowest ids among the rows matching ``waiting`` or any of ``moved``,
    as one array computed once. The waiting rows (many) are walked in id order and the
    walk stops at ``room``; the rows the pass moves (lapsed, due for a retry, picked:
    each an index range it updates anyway) are read whole, never walked in id order
    (that walks every failed row). An OR of them made PostgreSQL read every pending row."""
    parts = [select(model.id).where(*waiting).order_by(model.id).limit(room).subquery(),
             *(select(model.id).where(*where).subquery() for where in moved)]
    merged = union_all(*(select(part.c.id) for part in parts)).subquery()
    ids = select(merged.c.id).order_by(merged.c.id).limit(room)
    taken = select(type_coerce(func.array(ids.scalar_subquery()), ARRAY(Integer))
                   .label("ids")).cte(name)
    # Cast: ``= ANY (CAST((SELECT ids …) AS INTEGER[]))`` reads the array, where
    # ``= ANY (SELECT ids …)`` would compare the id with each row's whole array.
    return cast(select(taken.c.ids).scalar_subquery(), ARRAY(Integer))


def _rows(n: int, *sources: tuple[str, CTE, Any]) -> list[Select[Any]]:
    """The final SELECT's parts: (type number, kind, id, handed out) per CTE."""
    return [select(_written(n), states.constant(kind), cte.c.id, taken)
            for kind, cte, taken in sources]


@cache
def _sync_statement(models: tuple[Registry, ...]) -> Any:
    """Expiry, retries and hand-out of every registry in ``models``, as one statement
    (see the module's docstring); its rows are (type number, kind, id, handed out)."""
    parts = []
    for n, model in enumerate(models):
        now, recent = _now(), bindparam("recent", type_=UTCDateTime())
        started, failed, pending = (states.constant(SyncState.STARTED),
                                    states.constant(SyncState.FAILED),
                                    states.constant(SyncState.PENDING))
        expiring = model.lease_until < now
        retrying = model.retry_at <= now
        # In flight once the expired rows are back: started ones still held, and pending
        # ones handed out recently (two bounded counts, each from its own index).
        room = _room(bindparam(f"limit_{n}", type_=BigInteger),
                     _count(model.state == started)
                     - _count(model.state == started, expiring)
                     + _count(model.state == pending, model.enqueued_at >= recent),
                     f"room_{n}")
        taken = _first((model.state == pending,
                        or_(model.enqueued_at.is_(None), model.enqueued_at < recent)),
                       [(model.state == started, expiring), (model.state == failed, retrying)],
                       model, room, f"take_{n}")
        handed_out = model.id == any_(taken)
        marked = case((handed_out, now), else_=null())
        expired = states.sync_update(
            model, "expire", expiring, updated_at=now, claimed_by=None, lease_until=None,
            enqueued_at=marked, last_error=LEASE_EXPIRED,
        ).returning(model.enqueued_at.is_not(None).label("taken")).cte(f"expired_{n}")
        retried = states.sync_update(
            model, "retry", retrying, updated_at=now, enqueued_at=marked,
        ).returning(model.enqueued_at.is_not(None).label("taken")).cte(f"retried_{n}")
        waiting = (update(model).where(handed_out, model.state == pending)
                   .values(enqueued_at=now).returning(model.id).cte(f"taken_{n}"))
        parts += _rows(n, ("expired", expired, expired.c.taken),
                       ("retried", retried, retried.c.taken),
                       ("taken", waiting, true()))
    return union_all(*parts)


@cache
def _verification_statement(models: tuple[Registry, ...]) -> Any:
    """Verification's expiry, disabled retries, paced re-verification and hand-out of
    every registry in ``models``, as one statement; its rows are (type number, id)
    of the rows handed out."""
    parts = []
    for n, model in enumerate(models):
        now, requeue_at = _now(), bindparam("requeue_at", type_=UTCDateTime())
        budget = bindparam(f"budget_{n}", type_=BigInteger)
        started, disabled, pending, synced = (
            states.constant(VerificationState.STARTED),
            states.constant(VerificationState.DISABLED),
            states.constant(VerificationState.PENDING), states.constant(SyncState.SYNCED))
        lapsed = model.verification_retry_at < now
        retrying = and_(model.verification_state == disabled,
                        model.verification_retry_at <= now)
        picked = _oldest_verified(model, retrying, budget, n)
        room = _room(bindparam(f"limit_{n}", type_=BigInteger),
                     _count(model.verification_state == started)
                     - _count(model.verification_state == started, lapsed),
                     f"verify_room_{n}")
        due = and_(model.state == synced, model.verification_state == pending,
                   or_(model.verification_retry_at.is_(None),
                       model.verification_retry_at <= now))
        taken = _first((due,),
                       [(model.verification_state == started, lapsed, model.state == synced),
                        (retrying, model.state == synced),
                        (model.id.in_(picked), model.state == synced)],
                       model, room, f"verify_take_{n}")
        handed_out = model.id == any_(taken)
        marked = case((handed_out, requeue_at), else_=null())
        moved = [
            states.verification_update(model, "expire", lapsed, updated_at=now,
                                       verification_retry_at=marked),
            states.verification_update(model, "reverify", retrying, updated_at=now,
                                       verification_retry_at=marked),
            states.verification_update(model, "reverify", model.id.in_(picked),
                                       updated_at=now, verification_retry_at=marked),
        ]
        ctes = [stmt.returning(model.verification_retry_at.is_not(None).label("taken"))
                .cte(f"verify_{kind}_{n}") for kind, stmt in enumerate(moved)]
        waiting = (update(model).where(handed_out, due)
                   .values(verification_retry_at=requeue_at).returning(model.id)
                   .cte(f"verify_taken_{n}"))
        parts += [select(_written(n), cte.c.id).where(cte.c.taken) for cte in ctes]
        parts.append(select(_written(n), waiting.c.id))
    return union_all(*parts)


def _oldest_verified(model: Registry, retrying: Any, budget: Any, n: int) -> Any:
    """The re-verification's ``budget`` rows (``verification_rows._oldest_verified``):
    never verified first, then the oldest verified before the cutoff; not the disabled
    rows ``retrying`` moves anyway (the steps saw those pending already)."""
    walked = and_(
        model.verification_state.in_([states.constant(VerificationState.SUCCEEDED),
                                      states.constant(VerificationState.DISABLED)]),
        or_(model.verification_state != states.constant(VerificationState.DISABLED),
            model.verification_retry_at.is_(None),
            model.verification_retry_at > _now()))
    never = (select(model.id).where(walked, model.verified_at.is_(None))
             .order_by(model.id).limit(budget).subquery())
    oldest = (select(model.id, model.verified_at)
              .where(walked, model.verified_at < bindparam("cutoff", type_=UTCDateTime()))
              .order_by(model.verified_at).limit(budget).subquery())
    both = union_all(
        select(never.c.id, _written(0).label("rank"), null().label("verified_at")),
        select(oldest.c.id, _written(1), oldest.c.verified_at)).subquery()
    picked = (select(both.c.id).order_by(both.c.rank, both.c.verified_at).limit(budget)
              .cte(f"verify_picked_{n}"))
    return select(picked.c.id)
