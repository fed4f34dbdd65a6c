"""The work a dramatiq message stands for: sync a batch of registry rows of one type.

Messages are only hints: a batch claims whichever of its rows are still pending
(conditional UPDATE), so duplicate or stale messages do nothing, and a lost
message is re-sent by the scheduler. A lease with a heartbeat marks the rows
held; if this process dies the scheduler returns them to pending within a lease.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.secondary import metrics, registry
from geo_sync.secondary.models import Registry
from geo_sync.secondary.runtime import Runtime
from replicators.registry import replicator_for

log = get_logger("worker")


@contextmanager
def _heartbeat(runtime: Runtime, model: Registry, held: set[int], token: str
               ) -> Iterator[None]:
    lease = runtime.settings.lease_seconds
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease / 3):
            try:
                with write_transaction(runtime.engine) as conn:
                    registry.heartbeat(conn, model, sorted(held), token, lease)
            except Exception as exc:  # the DB blipped; the next beat retries within the lease
                log.warning("lease_heartbeat_failed", error=str(exc))

    thread = threading.Thread(target=beat, name="geo-sync-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def sync_items(runtime: Runtime, type_name: str, ids: list[int]) -> None:
    """Claim the still-pending rows among ``ids`` and sync (or delete) each in turn."""
    replicator = replicator_for(type_name)
    model = replicator.registry
    settings = runtime.settings
    token = f"{runtime.worker_id}:{uuid.uuid4().hex[:8]}"
    with write_transaction(runtime.engine) as conn:
        claimed = registry.claim(conn, model, ids, token, settings.lease_seconds)
    if not claimed:
        return
    held = {item.id for item in claimed}
    ctx = runtime.sync_context
    with _heartbeat(runtime, model, held, token):
        for item in claimed:
            if runtime.stopping.is_set():
                with write_transaction(runtime.engine) as conn:
                    registry.release(conn, model, sorted(held), token)
                log.info("batch_released_on_shutdown", replicable=type_name, items=len(held))
                return
            structlog.contextvars.bind_contextvars(
                replicable=type_name, record_id=item.record_id, correlation_id=token)
            started = time.monotonic()
            try:
                if item.tombstone:
                    replicator.remove(ctx, item)
                    with write_transaction(runtime.engine) as conn:
                        registry.finish_deleted(conn, model, item, token)
                    log.info("mirror_copy_deleted", path=item.path)
                else:
                    replicator.sync(ctx, item)
                    with write_transaction(runtime.engine) as conn:
                        synced = registry.finish_synced(conn, model, item, token)
                    metrics.observe_transfer(type_name, time.monotonic() - started)
                    log.info("synced" if synced else "synced_but_outdated", path=item.path,
                             seconds=round(time.monotonic() - started, 3))
            except Exception as exc:
                with write_transaction(runtime.engine) as conn:
                    registry.finish_failed(
                        conn, model, item, token, exc,
                        retry_cap=settings.retry_cap_seconds,
                        missing_cap=settings.missing_retry_cap_seconds,
                    )
            finally:
                held.discard(item.id)
                structlog.contextvars.clear_contextvars()
