"""The sync state machine, applied by conditional UPDATEs on real databases."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import AuthError, MissingOnPrimary, TransientError
from geo_sync.tracking import event_rows, sync_rows
from geo_sync.tracking.states import SYNC_TRANSITIONS, SyncState
from replicators.artifact import ArtifactRegistry as Reg


def _row(engine: Engine, record_id: str = "a") -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Reg.__table__).where(Reg.record_id == record_id))
                    .mappings().one())


def _event(engine: Engine, record_id: str = "a", *, tombstone: bool = False) -> None:
    with write_transaction(engine) as conn:
        event_rows.note_changes(conn, Reg, [event_rows.NetChange(
            record_id, f"{record_id}.bin", tombstone=tombstone, size=1, checksum=None)])


def _claim(engine: Engine, worker: str = "w1") -> list[sync_rows.Claimed]:
    with write_transaction(engine) as conn:
        ids = conn.execute(select(Reg.id)).scalars().all()
        return sync_rows.claim(conn, Reg, ids, worker, lease_seconds=30)


def test_a_claimed_row_finishes_synced_when_no_event_arrived(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine)
    assert _row(tracking_engine)["state"] == SyncState.STARTED
    with write_transaction(tracking_engine) as conn:
        assert not sync_rows.finish_synced_many(conn, Reg, [item], "w1"), "synced"
    row = _row(tracking_engine)
    assert row["state"] == SyncState.SYNCED
    assert row["claimed_by"] is None and row["last_synced_at"] is not None


def test_an_event_during_sync_sends_the_row_back_to_pending(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine)
    _event(tracking_engine)  # a push while the worker fetches
    assert _row(tracking_engine)["state"] == SyncState.STARTED, "the worker keeps its claim"
    with write_transaction(tracking_engine) as conn:
        assert sync_rows.finish_synced_many(conn, Reg, [item], "w1"), "outdated"
    row = _row(tracking_engine)
    assert row["state"] == SyncState.PENDING
    assert row["generation"] == item.generation + 1


def test_a_group_finishes_in_one_go_each_row_by_its_own_generation(
    tracking_engine: Engine,
) -> None:
    for n in range(4):
        _event(tracking_engine, f"r{n}")
    items = sorted(_claim(tracking_engine), key=lambda item: item.record_id)
    _event(tracking_engine, "r1")  # pushed while being fetched
    with write_transaction(tracking_engine) as conn:  # r3's lease went to another worker
        conn.execute(update(Reg).where(Reg.record_id == "r3").values(claimed_by="other"))
        outdated = sync_rows.finish_synced_many(conn, Reg, items, "w1")
    assert [item.record_id for item in outdated] == ["r1", "r3"]
    with tracking_engine.connect() as conn:
        rows = {r.record_id: r for r in conn.execute(select(Reg.record_id, Reg.state,
                                                            Reg.mirror_path, Reg.claimed_by))}
    assert {k: r.state for k, r in rows.items()} == {
        "r0": SyncState.SYNCED, "r1": SyncState.PENDING, "r2": SyncState.SYNCED,
        "r3": SyncState.STARTED}
    assert rows["r2"].mirror_path == items[2].path and rows["r3"].claimed_by == "other"


def test_two_workers_racing_for_a_row_cannot_both_claim_it(tracking_engine: Engine) -> None:
    for n in range(50):
        _event(tracking_engine, f"r{n}")
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        barrier.wait()
        results[name] = [c.id for c in _claim(tracking_engine, name)]

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [i for ids in results.values() for i in ids]
    assert len(claimed) == len(set(claimed)) == 50


def test_a_failure_records_the_error_and_backs_off(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine)
    with write_transaction(tracking_engine) as conn:
        sync_rows.finish_failed(conn, Reg, item, "w1", TransientError("connection reset"),
                               retry_cap=3600, missing_cap=14400)
    row = _row(tracking_engine)
    assert row["state"] == SyncState.FAILED
    assert "connection reset" in str(row["last_error"])
    assert row["retry_count"] == 1
    assert row["retry_at"] > utcnow()  # type: ignore[operator]
    with write_transaction(tracking_engine) as conn:
        assert sync_rows.retry_due(conn, Reg) == []
        assert sync_rows.retry_due(conn, Reg, now=utcnow() + timedelta(hours=2)) == [item.id]
    assert _row(tracking_engine)["state"] == SyncState.PENDING


def test_an_error_that_retrying_cannot_fix_waits_the_cap(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine)
    with write_transaction(tracking_engine) as conn:
        sync_rows.finish_failed(conn, Reg, item, "w1", AuthError("primary refused us"),
                               retry_cap=3600, missing_cap=14400)
    row = _row(tracking_engine)
    assert str(row["last_error"]).startswith("not retryable until fixed: primary refused us")
    assert row["retry_at"] > utcnow() + timedelta(minutes=59)  # type: ignore[operator]


def test_missing_on_primary_is_flagged(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine)
    with write_transaction(tracking_engine) as conn:
        sync_rows.finish_failed(conn, Reg, item, "w1", MissingOnPrimary("gone"),
                               retry_cap=3600, missing_cap=14400)
    assert _row(tracking_engine)["missing_on_primary"] is True
    _event(tracking_engine)  # a new event clears the flag and retries at once
    row = _row(tracking_engine)
    assert row["missing_on_primary"] is False and row["state"] == SyncState.PENDING


def test_an_expired_lease_returns_the_row_and_the_dead_worker_cannot_finish(
    tracking_engine: Engine,
) -> None:
    _event(tracking_engine)
    [item] = _claim(tracking_engine, "dead")
    with write_transaction(tracking_engine) as conn:
        assert sync_rows.release_expired(conn, Reg) == []
        conn.execute(update(Reg).values(lease_until=utcnow() - timedelta(seconds=1)))
        assert sync_rows.release_expired(conn, Reg) == [item.id]
    assert _row(tracking_engine)["state"] == SyncState.PENDING
    [again] = _claim(tracking_engine, "alive")
    with write_transaction(tracking_engine) as conn:
        assert sync_rows.finish_synced_many(conn, Reg, [item], "dead"), "outdated"
    assert _row(tracking_engine)["state"] == SyncState.STARTED
    with write_transaction(tracking_engine) as conn:
        assert not sync_rows.finish_synced_many(conn, Reg, [again], "alive"), "synced"


def test_a_tombstoned_row_is_forgotten_once_its_copy_is_deleted(tracking_engine: Engine) -> None:
    _event(tracking_engine)
    _event(tracking_engine, tombstone=True)
    [item] = _claim(tracking_engine)
    assert item.tombstone
    with write_transaction(tracking_engine) as conn:
        assert sync_rows.finish_deleted(conn, Reg, item, "w1")
        assert conn.execute(select(Reg.id)).all() == []


def test_enqueueing_respects_the_in_flight_limit_and_resends_lost_messages(
    tracking_engine: Engine,
) -> None:
    for n in range(10):
        _event(tracking_engine, f"r{n}")
    with write_transaction(tracking_engine) as conn:
        first = sync_rows.take_for_enqueue(conn, Reg, limit=4, requeue_after=60)
        assert len(first) == 4
        assert sync_rows.take_for_enqueue(conn, Reg, limit=4, requeue_after=60) == []
        conn.execute(update(Reg).where(Reg.id.in_(first))
                     .values(enqueued_at=utcnow() - timedelta(seconds=120)))
        assert sorted(sync_rows.take_for_enqueue(conn, Reg, limit=4, requeue_after=60)) == \
            sorted(first)


def test_every_transition_names_real_states() -> None:
    for name, (sources, target) in SYNC_TRANSITIONS.items():
        assert sources and all(isinstance(s, SyncState) for s in sources), name
        assert isinstance(target, SyncState)


def test_a_run_of_events_applies_as_its_net_effect(tracking_engine: Engine) -> None:
    _event(tracking_engine, "old")
    with write_transaction(tracking_engine) as conn:
        event_rows.note_changes(conn, Reg, [
            event_rows.NetChange("old", "old.bin", tombstone=True, size=None, checksum=None,
                               events=3),
            event_rows.NetChange("new", "moved.bin", tombstone=False, size=7, checksum=None,
                               events=2),
        ])
    old, new = _row(tracking_engine, "old"), _row(tracking_engine, "new")
    assert (old["generation"], old["tombstone"], old["state"]) == (4, True, "pending")
    assert (new["generation"], new["path"], new["expected_size"]) == (2, "moved.bin", 7)
