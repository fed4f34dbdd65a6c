"""The registry counts the triggers keep equal a full count, whatever changed the rows
(events, workers, verifiers, deletes, an operator's SQL) and whenever they are folded."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, update

from geo_sync.db import write_transaction
from geo_sync.tracking import event_rows, row_counts, sync_rows
from geo_sync.tracking.models import RegistryCount
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.artifact import ArtifactRegistry as Reg
from replicators.type_map import REPLICATORS

TABLE = Reg.__tablename__  # type: ignore[attr-defined]
RECORDS = [f"r{n}" for n in range(8)]

events = st.lists(st.sampled_from(RECORDS), min_size=1, max_size=8, unique=True).map(
    lambda ids: ("events", ids))
moves = st.tuples(st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4),
                  st.sampled_from(list(SyncState)), st.sampled_from(list(VerificationState))
                  ).map(lambda m: ("move", m))
step = st.one_of(events, moves, st.sampled_from(RECORDS).map(lambda r: ("delete", r)),
                 st.just(("fold", None)), st.just(("claim", None)))


def _actual(engine: Engine) -> Counter[tuple[str, str]]:
    with engine.connect() as conn:
        return Counter({(s, v): n for s, v, n in conn.execute(
            select(Reg.state, Reg.verification_state, func.count())
            .group_by(Reg.state, Reg.verification_state)).all()})


def _counted(engine: Engine) -> Counter[tuple[str, str]]:
    with engine.connect() as conn:
        return +row_counts.counts(conn, TABLE)  # zero entries dropped


def _apply(engine: Engine, kind: str, payload: Any) -> None:
    with write_transaction(engine) as conn:
        if kind == "events":
            event_rows.note_changes(conn, Reg, [event_rows.NetChange(
                r, f"{r}.bin", tombstone=False, size=1, checksum=None) for r in payload])
        elif kind == "move":
            ids, state, verification = payload
            conn.execute(update(Reg).where(Reg.record_id.in_(ids)).values(
                state=state.value, verification_state=verification.value))
        elif kind == "delete":
            conn.execute(delete(Reg).where(Reg.record_id == payload))
        elif kind == "claim":
            ids = conn.execute(select(Reg.id)).scalars().all()
            sync_rows.claim(conn, Reg, ids, "w1", lease_seconds=30)
    if kind == "fold":
        row_counts.fold(engine)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=10))
def test_the_counts_equal_a_full_count_after_any_changes(
    tracking_engine: Engine, steps: list[tuple[str, Any]]
) -> None:
    for kind, payload in steps:
        _apply(tracking_engine, kind, payload)
        assert _counted(tracking_engine) == _actual(tracking_engine), (kind, payload)


def test_a_fold_leaves_one_row_per_state_pair_and_the_same_counts(
    tracking_engine: Engine,
) -> None:
    for n in range(3):
        _apply(tracking_engine, "events", [f"x{n}", f"y{n}"])
    _apply(tracking_engine, "move", (["x0"], SyncState.SYNCED, VerificationState.SUCCEEDED))
    before = _counted(tracking_engine)
    assert row_counts.fold(tracking_engine) > 2
    assert _counted(tracking_engine) == before == _actual(tracking_engine)
    with tracking_engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(
            RegistryCount).where(RegistryCount.registry_table == TABLE)
        ).scalar_one()
    assert kept == len(before)


def test_status_counts_come_from_the_counts_and_agree_with_the_rows(
    tracking_engine: Engine,
) -> None:
    _apply(tracking_engine, "events", ["a", "b", "c"])
    _apply(tracking_engine, "move", (["a"], SyncState.SYNCED, VerificationState.SUCCEEDED))
    _apply(tracking_engine, "move", (["b"], SyncState.FAILED, VerificationState.FAILED))
    with write_transaction(tracking_engine) as conn:
        conn.execute(update(Reg).where(Reg.record_id == "b").values(
            missing_on_primary=True, mismatch_count=2))
    with tracking_engine.connect() as conn:
        counts = sync_rows.counts(conn, Reg)
    assert {k: counts[k] for k in ("synced", "failed", "pending", "started", "total",
                                  "verified", "verification_failed", "missing_on_primary",
                                  "mismatched")} == {
        "synced": 1, "failed": 1, "pending": 1, "started": 0, "total": 3, "verified": 1,
        "verification_failed": 1, "missing_on_primary": 1, "mismatched": 1}


def test_every_registry_is_counted_at_the_schema_head(tracking_engine: Engine) -> None:
    """A later migration that rebuilds a registry table (SQLite's batch mode copies it)
    must put the triggers back, or the counts would silently stop."""
    with tracking_engine.connect() as conn:
        if tracking_engine.dialect.name == "postgresql":
            names = set(conn.exec_driver_sql(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").scalars())
        else:
            names = set(conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    for replicator in REPLICATORS.values():
        table = replicator.registry_table.__tablename__  # type: ignore[attr-defined]
        assert set(row_counts.trigger_names(table)) <= names, table
