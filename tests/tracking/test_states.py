"""The transition tables are the only rule: a transition moves exactly the rows in one
of its source states, whether applied as a conditional UPDATE or as the CASE a batched
update uses."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, bindparam, select, update

from geo_sync.db import write_transaction
from geo_sync.tracking import states, sync_rows
from geo_sync.tracking.states import (
    SYNC_TRANSITIONS,
    VERIFICATION_TRANSITIONS,
    SyncState,
    VerificationState,
)
from replicators.artifact import ArtifactReplicator

Reg = ArtifactReplicator.registry_table


def _one_row_per_state(engine: Engine, column: str, values: list[str]) -> None:
    with write_transaction(engine) as conn:
        conn.execute(Reg.__table__.delete())
        sync_rows.insert_ignore(conn, Reg, [sync_rows.new_row(v, v) for v in values])
        for value in values:  # test setup: each row starts in the state it is named for
            conn.execute(update(Reg).where(Reg.record_id == value).values({column: value}))


def _states(engine: Engine, column: str) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.record_id: r[1] for r in conn.execute(
            select(Reg.record_id, getattr(Reg, column)))}


@pytest.mark.parametrize("name", sorted(SYNC_TRANSITIONS))
def test_a_sync_transition_moves_exactly_its_source_states(
        tracking_engine: Engine, name: str) -> None:
    sources, target = SYNC_TRANSITIONS[name]
    _one_row_per_state(tracking_engine, "state", [s.value for s in SyncState])
    with write_transaction(tracking_engine) as conn:
        moved = states.apply_sync(conn, Reg, name, Reg.id > 0)
    after = _states(tracking_engine, "state")
    assert after == {s.value: (target.value if s in sources else s.value) for s in SyncState}
    assert len(moved) == len(sources)


@pytest.mark.parametrize("name", sorted(VERIFICATION_TRANSITIONS))
def test_a_verification_transition_moves_exactly_its_source_states(
        tracking_engine: Engine, name: str) -> None:
    sources, target = VERIFICATION_TRANSITIONS[name]
    _one_row_per_state(tracking_engine, "verification_state",
                       [s.value for s in VerificationState])
    with write_transaction(tracking_engine) as conn:
        moved = states.apply_verification(conn, Reg, name, Reg.id > 0)
    assert _states(tracking_engine, "verification_state") == {
        s.value: (target.value if s in sources else s.value) for s in VerificationState}
    assert len(moved) == len(sources)


@pytest.mark.parametrize("name", sorted(SYNC_TRANSITIONS))
def test_the_batched_form_of_a_sync_transition_agrees_with_the_table(
        tracking_engine: Engine, name: str) -> None:
    sources, target = SYNC_TRANSITIONS[name]
    _one_row_per_state(tracking_engine, "state", [s.value for s in SyncState])
    with write_transaction(tracking_engine) as conn:  # executemany, as note_changes runs it
        conn.execute(update(Reg).where(Reg.record_id == bindparam("b_id"))
                     .values(state=states.sync_state_after(Reg, name))
                     .execution_options(synchronize_session=False),
                     [{"b_id": s.value} for s in SyncState])
    assert _states(tracking_engine, "state") == {
        s.value: (target.value if s in sources else s.value) for s in SyncState}


@pytest.mark.parametrize("name", sorted(VERIFICATION_TRANSITIONS))
def test_the_batched_form_of_a_verification_transition_agrees_with_the_table(
        tracking_engine: Engine, name: str) -> None:
    sources, target = VERIFICATION_TRANSITIONS[name]
    _one_row_per_state(tracking_engine, "verification_state",
                       [s.value for s in VerificationState])
    with write_transaction(tracking_engine) as conn:
        conn.execute(update(Reg).where(Reg.record_id == bindparam("b_id"))
                     .values(verification_state=states.verification_state_after(Reg, name))
                     .execution_options(synchronize_session=False),
                     [{"b_id": s.value} for s in VerificationState])
    assert _states(tracking_engine, "verification_state") == {
        s.value: (target.value if s in sources else s.value) for s in VerificationState}
