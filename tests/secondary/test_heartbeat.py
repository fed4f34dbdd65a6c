"""Worker heartbeats in the tracking DB (SQLite and PostgreSQL): alive while beating,
stale once silent, gone after a clean stop."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.heartbeat import Heartbeat, all_workers, beat, live_workers
from geo_sync.secondary.runtime import Runtime
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.models import WorkerRow


def _runtime(engine: Engine, tmp_path: Path, worker_id: str) -> Runtime:
    settings = SecondarySettings(name="s1", secret="s" * 40, primary_url="http://127.0.0.1:9",
                                 database_url="sqlite:///unused", mirror_root=tmp_path,
                                 worker_heartbeat_seconds=3600)
    return Runtime(settings, engine, PrimaryClient(settings), worker_id)


def test_a_beat_records_the_worker_and_its_items_and_a_second_beat_updates_it(
        tracking_engine: Engine, tmp_path: Path) -> None:
    runtime = _runtime(tracking_engine, tmp_path, "host:1:a")
    started = utcnow()
    with write_transaction(tracking_engine) as conn:
        beat(conn, runtime, "worker", started)
    runtime.note_item_done()
    runtime.note_item_done()
    with write_transaction(tracking_engine) as conn:
        beat(conn, runtime, "worker", started)
    with tracking_engine.connect() as conn:
        rows = all_workers(conn)
    assert [(r.worker_id, r.kind, r.items_done) for r in rows] == [("host:1:a", "worker", 2)]
    assert rows[0].last_item_at is not None
    runtime.client.close()


def test_a_silent_worker_is_stale_and_a_stopped_one_is_gone(tracking_engine: Engine,
                                                            tmp_path: Path) -> None:
    quiet = _runtime(tracking_engine, tmp_path, "host:1:quiet")
    busy = _runtime(tracking_engine, tmp_path, "host:2:busy")
    beating = Heartbeat(busy, "worker").start()
    with write_transaction(tracking_engine) as conn:
        beat(conn, quiet, "worker", utcnow())
        conn.execute(update(WorkerRow).where(WorkerRow.worker_id == "host:1:quiet")
                     .values(beat_at=utcnow() - timedelta(minutes=5)))
    with tracking_engine.connect() as conn:
        assert [r.worker_id for r in live_workers(conn, 60)] == ["host:2:busy"]
        assert len(all_workers(conn)) == 2
    beating.stop()
    with tracking_engine.connect() as conn:
        assert [r.worker_id for r in all_workers(conn)] == ["host:1:quiet"]
    quiet.client.close()
    busy.client.close()
