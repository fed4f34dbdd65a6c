"""A scheduler pass's combined statements (``pass_work``) do to the registries exactly
what the per-type steps did one after the other (``sync_rows`` and
``verification_rows``: expire, retry, hand out; expire, retry disabled, re-verify,
hand out), whatever the rows' states and times: the same rows handed out, moved and
left alone, column for column. On SQLite ``pass_work`` runs those steps itself; on
PostgreSQL it is one statement per purpose for all types."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, event, insert, select

from geo_sync.db import is_postgres, utcnow, write_transaction
from geo_sync.tracking import pass_work, sync_rows, verification_rows
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.artifact import ArtifactRegistry
from replicators.repository import RepositoryRegistry

MODELS: tuple[Registry, ...] = (ArtifactRegistry, RepositoryRegistry)
REQUEUE_AFTER = 60.0
REVERIFY_AFTER = 3600.0  # the cutoff is half of it ago
#: Offsets from the pass's time, in seconds, on both sides of every boundary a step
#: compares with (now, the requeue time, the re-verification cutoff).
OFFSETS = [-7200, -1800, -1000, -61, -60, -59, -1, 0, 1, 59, 3600]

times = st.one_of(st.none(), st.sampled_from(OFFSETS))
rows = st.lists(st.fixed_dictionaries({
    "state": st.sampled_from(list(SyncState)),
    "verification_state": st.sampled_from(list(VerificationState)),
    "lease_until": times, "retry_at": times, "enqueued_at": times,
    "verification_retry_at": times, "verified_at": times,
}), max_size=14)
asks = st.fixed_dictionaries({"limit": st.integers(0, 6), "verify_limit": st.integers(0, 6),
                              "budget": st.integers(0, 4)})


def _fill(engine: Engine, now: datetime, model: Registry, drawn: list[dict[str, Any]]
          ) -> list[dict[str, Any]]:
    """The drawn rows as registry rows, times relative to ``now``. Verification times are
    all distinct (a microsecond apart), so "the oldest" is one set of rows."""
    filled = []
    for n, row in enumerate(drawn, start=1):
        values = sync_rows.new_row(f"r{n}", f"p/{n}")
        values.update({"id": n, "state": row["state"].value,
                       "verification_state": row["verification_state"].value,
                       "claimed_by": "w" if row["state"] == SyncState.STARTED else None})
        for column in ("lease_until", "retry_at", "enqueued_at", "verification_retry_at"):
            offset = row[column]
            values[column] = None if offset is None else now + timedelta(seconds=offset)
        values["verified_at"] = None if row["verified_at"] is None else (
            now + timedelta(seconds=row["verified_at"], microseconds=n))
        filled.append(values)
    return filled


def _restore(engine: Engine, tables: dict[Registry, list[dict[str, Any]]]) -> None:
    with write_transaction(engine) as conn:
        for model, filled in tables.items():
            conn.execute(delete(model))
            if filled:
                conn.execute(insert(model), filled)


def _read(engine: Engine, before: dict[Registry, list[dict[str, Any]]]
          ) -> dict[str, list[dict[str, Any]]]:
    """Every row, every column; ``updated_at`` as whether the pass wrote it (each
    transition stamps its own clock)."""
    result = {}
    with engine.connect() as conn:
        for model, filled in before.items():
            stamped = {row["id"]: row["updated_at"] for row in filled}
            found = [dict(row) for row in conn.execute(
                select(model.__table__).order_by(model.id)).mappings()]  # type: ignore[attr-defined]
            for row in found:
                row["updated_at"] = row["updated_at"] != stamped[row["id"]]
            result[model.__tablename__] = found  # type: ignore[attr-defined]
    return result


def _steps(engine: Engine, now: datetime, drawn: dict[str, int]
           ) -> tuple[dict[str, pass_work.SyncWork], dict[str, list[int]]]:
    """The per-type steps as the scheduler ran them before ``pass_work``, one after the
    other in a transaction."""
    sync, verify = {}, {}
    with write_transaction(engine) as conn:
        for model in MODELS:
            table = model.__tablename__  # type: ignore[attr-defined]
            expired = sync_rows.release_expired(conn, model, now)
            retried = sync_rows.retry_due(conn, model, now)
            taken = sync_rows.take_for_enqueue(conn, model, drawn["limit"], REQUEUE_AFTER, now)
            sync[table] = pass_work.SyncWork(sorted(expired), sorted(retried), taken)
            verification_rows.release_expired(conn, model, now)
            verification_rows.retry_disabled(conn, model, now)
            verification_rows.reverify_due(conn, model, REVERIFY_AFTER, drawn["budget"], now)
            verify[table] = verification_rows.take_for_verify(
                conn, model, drawn["verify_limit"], REQUEUE_AFTER, now)
    return sync, verify


def _pass(engine: Engine, now: datetime, drawn: dict[str, int]
          ) -> tuple[dict[str, pass_work.SyncWork], dict[str, list[int]]]:
    with pass_work.connect(engine) as conn:
        sync = pass_work.take_sync_work(
            conn, [pass_work.SyncAsk(model, drawn["limit"]) for model in MODELS],
            REQUEUE_AFTER, now)
        verify = pass_work.take_verification_work(
            conn, [pass_work.VerifyAsk(model, drawn["verify_limit"], drawn["budget"])
                   for model in MODELS], REQUEUE_AFTER, REVERIFY_AFTER, now)
    return sync, verify


def _drawn(state: SyncState, verification: VerificationState, **times: int | None
           ) -> dict[str, Any]:
    return {"state": state, "verification_state": verification,
            **{column: times.get(column) for column in (
                "lease_until", "retry_at", "enqueued_at", "verification_retry_at",
                "verified_at")}}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(artifacts=rows, repositories=rows, drawn=asks)
# The steps retried the disabled row before re-verification picked the oldest: the
# budget of one goes to the next oldest, not to the row already on its way.
@example(artifacts=[_drawn(SyncState.SYNCED, VerificationState.DISABLED,
                           verification_retry_at=-1, verified_at=-7200),
                    _drawn(SyncState.SYNCED, VerificationState.SUCCEEDED, verified_at=-3600)],
         repositories=[], drawn={"limit": 0, "verify_limit": 0, "budget": 1})
def test_a_pass_moves_and_hands_out_exactly_the_rows_the_steps_did(
    tracking_engine: Engine, artifacts: list[dict[str, Any]],
    repositories: list[dict[str, Any]], drawn: dict[str, int],
) -> None:
    now = utcnow()
    before = {ArtifactRegistry: _fill(tracking_engine, now, ArtifactRegistry, artifacts),
              RepositoryRegistry: _fill(tracking_engine, now, RepositoryRegistry,
                                        repositories)}
    _restore(tracking_engine, before)
    combined = _pass(tracking_engine, now, drawn)
    after_pass = _read(tracking_engine, before)
    _restore(tracking_engine, before)
    steps = _steps(tracking_engine, now, drawn)
    assert combined == steps
    assert after_pass == _read(tracking_engine, before)


def test_a_pass_is_one_statement_per_purpose_on_postgresql(tracking_engine: Engine) -> None:
    """Work in every step of two types: PostgreSQL takes it in two statements, one per
    purpose (besides setting their plan mode), and no transaction of their own; SQLite
    runs the steps."""
    now = utcnow()
    drawn = [{"state": state, "verification_state": verification, "lease_until": -1,
              "retry_at": -1, "enqueued_at": None, "verification_retry_at": -1,
              "verified_at": -7200}
             for state in SyncState for verification in VerificationState]
    before = {model: _fill(tracking_engine, now, model, drawn) for model in MODELS}
    _restore(tracking_engine, before)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(tracking_engine, "before_cursor_execute", record)
    try:
        sync, verify = _pass(tracking_engine, now, {"limit": 3, "verify_limit": 3,
                                                    "budget": 2})
    finally:
        event.remove(tracking_engine, "before_cursor_execute", record)
    for model in MODELS:
        table = model.__tablename__  # type: ignore[attr-defined]
        assert sync[table].expired and sync[table].retried and len(sync[table].taken) == 3
        assert len(verify[table]) == 3
    if is_postgres(tracking_engine):
        queries = [s for s in statements if "plan_cache_mode" not in s]
        assert len(queries) == 2, statements
