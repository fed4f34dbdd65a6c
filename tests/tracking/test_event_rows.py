"""Events applied to a registry: the PostgreSQL upsert against the portable path.

The fast path (one INSERT … SELECT FROM jsonb_to_recordset … ON CONFLICT DO UPDATE) must leave
exactly the rows the portable path (lookup, INSERT, executemany UPDATE) leaves,
from any history: generated runs of event pages, with rows moved by workers and
verifiers into every state in between. Both run side by side in one PostgreSQL
database, on two registries with the same columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, update

from geo_sync.db import make_engine, write_transaction
from geo_sync.migrate import TRACKING
from geo_sync.tracking import event_rows
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.artifact import ArtifactRegistry
from replicators.job_log import JobLogRegistry
from tests.services import temporary_database

FAST, PORTABLE = ArtifactRegistry, JobLogRegistry
IGNORED = {"id", "created_at", "updated_at"}
# Ids and paths with what a JSON document or an array literal must escape.
RECORDS = ["a", "b", "c", 'quote"back\\slash', "{ü,n}"]

change = st.builds(
    lambda *fields: fields,
    st.sampled_from(["x.bin", "y/z.bin", "renamed.bin"])
    | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
              min_size=1, max_size=40),
    st.booleans(),
    st.none() | st.integers(0, 2**63 - 1),
    st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    st.integers(1, 5),
    st.none() | st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
page = st.dictionaries(st.sampled_from(RECORDS), change, min_size=1, max_size=len(RECORDS))
# What workers, verifiers and operators do to a row between pages.
moved = st.tuples(st.sampled_from(RECORDS), st.sampled_from(list(SyncState)),
                  st.sampled_from(list(VerificationState)), st.integers(0, 3), st.booleans())
step = st.one_of(page.map(lambda p: ("events", p)), moved.map(lambda m: ("move", m)),
                 st.sampled_from(RECORDS).map(lambda r: ("forget", r)))


@pytest.fixture(scope="module")
def pg_tracking() -> Iterator[Engine]:
    with temporary_database("geo_tracking") as url:
        engine = make_engine(url)
        TRACKING.upgrade(engine)
        yield engine
        engine.dispose()


def _rows(engine: Engine, model: Registry) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(model.__table__)).mappings().all()  # type: ignore[attr-defined]
    return {row["record_id"]: {k: v for k, v in row.items() if k not in IGNORED}
            for row in rows}


def _apply(engine: Engine, kind: str, payload: Any) -> None:
    with write_transaction(engine) as conn:
        if kind == "events":
            changes = [event_rows.NetChange(record_id, path, tombstone=tombstone, size=size,
                                            checksum=checksum, events=events,
                                            committed_at=committed_at)
                       for record_id, (path, tombstone, size, checksum, events, committed_at)
                       in payload.items()]
            event_rows.note_changes(conn, FAST, changes)
            event_rows.note_changes_portable(conn, PORTABLE, changes)
            return
        for model in (FAST, PORTABLE):
            if kind == "forget":  # a finished delete removes the row
                conn.execute(delete(model).where(model.record_id == payload))
                continue
            record_id, state, verification, retries, missing = payload
            conn.execute(update(model).where(model.record_id == record_id).values(
                state=state.value, verification_state=verification.value,
                retry_count=retries, mismatch_count=retries, missing_on_primary=missing,
                claimed_by="w1" if state == SyncState.STARTED else None,
                last_error="boom" if state == SyncState.FAILED else None))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_postgresql_upsert_leaves_the_rows_the_portable_path_leaves(
    pg_tracking: Engine, steps: list[tuple[str, Any]]
) -> None:
    with write_transaction(pg_tracking) as conn:
        conn.execute(delete(FAST))
        conn.execute(delete(PORTABLE))
    for kind, payload in steps:
        _apply(pg_tracking, kind, payload)
        assert _rows(pg_tracking, FAST) == _rows(pg_tracking, PORTABLE), (kind, payload)


def test_an_event_leaves_a_started_row_to_its_worker_and_bumps_its_generation(
    tracking_engine: Engine,
) -> None:
    """On both backends (SQLite takes the portable path): the transition table's
    ``event`` applies, a started row keeps its worker."""
    first = [event_rows.NetChange("a", "a.bin", tombstone=False, size=1, checksum=None)]
    with write_transaction(tracking_engine) as conn:
        event_rows.note_changes(conn, FAST, first)
        conn.execute(update(FAST).values(state="started", claimed_by="w1",
                                         verification_state="succeeded"))
        event_rows.note_changes(conn, FAST, [event_rows.NetChange(
            "a", "moved.bin", tombstone=True, size=None, checksum=None, events=3)])
    row = _rows(tracking_engine, FAST)["a"]
    assert (row["state"], row["claimed_by"], row["generation"]) == ("started", "w1", 4)
    assert (row["path"], row["tombstone"], row["verification_state"]) == (
        "moved.bin", True, "pending")
