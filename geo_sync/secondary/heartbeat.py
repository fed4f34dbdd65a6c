"""Worker heartbeats: every process that runs workers upserts its row in ``geo_workers``
on an interval, so `check`, `status` and the metrics can list who is alive and whether
each is getting through items. A clean stop deletes the row; a killed process's row
simply goes stale."""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.logging import get_logger
from geo_sync.tracking.models import WorkerRow

if TYPE_CHECKING:  # status reads heartbeats: the runtime would load the replicators
    from geo_sync.secondary.runtime import Runtime

log = get_logger("heartbeat")


def beat(conn: Connection, runtime: Runtime, kind: str, started_at: datetime) -> None:
    """Record that this process is alive now, with its item count."""
    now = utcnow()
    values = {"beat_at": now, "items_done": runtime.items_done,
              "last_item_at": runtime.last_item_at}
    updated = conn.execute(update(WorkerRow).where(WorkerRow.worker_id == runtime.worker_id)
                           .values(**values)).rowcount
    if not updated:
        conn.execute(insert(WorkerRow).values(
            worker_id=runtime.worker_id, kind=kind, hostname=socket.gethostname(),
            pid=os.getpid(), started_at=started_at, **values))


def live_workers(conn: Connection, stale_after: float) -> list[Row[Any]]:
    """Rows that beat within ``stale_after`` seconds, oldest first."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    return list(conn.execute(select(WorkerRow).where(WorkerRow.beat_at >= cutoff)
                             .order_by(WorkerRow.started_at)).all())


def all_workers(conn: Connection) -> list[Row[Any]]:
    """Every heartbeat row, stale ones included (a killed worker's row stays)."""
    return list(conn.execute(select(WorkerRow).order_by(WorkerRow.started_at)).all())


class Heartbeat:
    """A thread beating for ``runtime`` until ``stop()``; a failed beat is logged and the
    next one retries (the row going stale is exactly what `check` should then see)."""

    def __init__(self, runtime: Runtime, kind: str) -> None:
        self.runtime = runtime
        self.kind = kind
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="geo-sync-worker-heartbeat",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            with write_transaction(self.runtime.engine) as conn:
                beat(conn, self.runtime, self.kind, self.started_at)
            # Here, not at the top: `status` reads heartbeats without prometheus_client.
            from geo_sync.metrics import WORKER_HEARTBEAT  # noqa: PLC0415

            WORKER_HEARTBEAT.set_to_current_time()
        except Exception as exc:
            log.warning("worker_heartbeat_failed", error=str(exc))

    def _loop(self) -> None:
        while not self._stop.wait(self.runtime.settings.worker_heartbeat_seconds):
            self._beat()

    def stop(self) -> None:
        """Stop beating and remove our row: a clean stop is not a dead worker."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            with write_transaction(self.runtime.engine) as conn:
                conn.execute(delete(WorkerRow).where(
                    WorkerRow.worker_id == self.runtime.worker_id))
        except Exception as exc:
            log.warning("worker_heartbeat_not_removed", error=str(exc))
