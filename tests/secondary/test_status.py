"""secondary_status reads the tracking DB alone (no primary asked): counts per type
and state, the most recent errors, and the cursor's holder."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, update

from geo_sync.db import write_transaction
from geo_sync.secondary import leader
from geo_sync.secondary.status import LAST_ERRORS, secondary_status
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS

rows = st.lists(st.tuples(st.sampled_from(sorted(REPLICATORS)), st.sampled_from(SyncState),
                          st.sampled_from(VerificationState), st.booleans()), max_size=25)


def _fill(engine: Engine, spec: list[tuple[str, SyncState, VerificationState, bool]]) -> None:
    with write_transaction(engine) as conn:
        for replicator in REPLICATORS.values():
            conn.execute(delete(replicator.registry_table))
        for number, (type_name, state, verification, failing) in enumerate(spec):
            model = REPLICATORS[type_name].registry_table
            path = f"item-{number}"
            sync_rows.insert_ignore(conn, model, [sync_rows.new_row(path, path)])
            # Test setup: put the row straight into the state under test.
            conn.execute(update(model).where(model.record_id == path).values(
                state=state, verification_state=verification,
                last_error=f"error {number}" if failing else None))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=rows)
def test_counts_per_type_and_state_match_the_rows(
        tracking_engine: Engine,
        spec: list[tuple[str, SyncState, VerificationState, bool]]) -> None:
    _fill(tracking_engine, spec)
    report = secondary_status(tracking_engine, None, "s1")
    assert set(report["types"]) == set(REPLICATORS)
    for type_name, counts in report["types"].items():
        mine = [row for row in spec if row[0] == type_name]
        states = Counter(row[1] for row in mine)
        assert {s.value: counts[s.value] for s in SyncState} == {
            s.value: states.get(s, 0) for s in SyncState}
        assert counts["total"] == len(mine)
        assert counts["verified"] == sum(
            1 for row in mine if row[2] == VerificationState.SUCCEEDED)
        assert counts["verification_failed"] == sum(
            1 for row in mine if row[2] == VerificationState.FAILED)
    erring = {f"item-{n}" for n, row in enumerate(spec)
              if row[3] and row[1] != SyncState.SYNCED}
    shown = {e["path"] for e in report["last_errors"]}
    assert shown <= erring and len(shown) == min(len(erring), LAST_ERRORS)
    assert report["primary"] == {"queried": False, "reachable": False}


def test_the_cursor_holder_is_shown_while_its_lease_runs(tracking_engine: Engine) -> None:
    assert secondary_status(tracking_engine, None, "s1")["cursor_holder"]["alive"] is False
    assert leader.acquire(tracking_engine, "host:1", ttl=60)
    holder = secondary_status(tracking_engine, None, "s1")["cursor_holder"]
    assert holder["holder"] == "host:1" and holder["alive"] is True
