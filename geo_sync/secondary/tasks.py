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
from geo_sync.metrics import ITEMS_SYNCED, SYNC_RETRIES, TRANSFER_BYTES, TRANSFER_SECONDS
from geo_sync.secondary.runtime import Runtime
from geo_sync.tracking import sync_rows
from geo_sync.tracking.models import Registry
from geo_sync.tracking.states import SyncState
from replicators.registry import replicator_for

log = get_logger("worker")
#: Successful items are marked synced together, one commit per group: a commit per
#: item was the largest cost per small artifact after the transfer itself.
FINISH_GROUP = 16
FINISH_EVERY = 0.25


@contextmanager
def _heartbeat(runtime: Runtime, model: Registry, held: set[int], token: str
               ) -> Iterator[None]:
    lease = runtime.settings.lease_seconds
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease / 3):
            try:
                with write_transaction(runtime.engine) as conn:
                    sync_rows.heartbeat(conn, model, sorted(held), token, lease)
            except Exception as exc:  # the DB blipped; the next beat retries within the lease
                log.warning("lease_heartbeat_failed", error=str(exc))

    thread = threading.Thread(target=beat, name="geo-sync-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _Batch:
    """One message's rows: sync or delete each, finishing successes in groups."""

    def __init__(self, runtime: Runtime, type_name: str, claimed: list[sync_rows.Claimed],
                 token: str) -> None:
        self.runtime = runtime
        self.type_name = type_name
        self.replicator = replicator_for(type_name)
        self.model = self.replicator.registry
        self.claimed = claimed
        self.token = token
        self.held = {item.id for item in claimed}
        self.done: list[sync_rows.Claimed] = []
        self.last_flush = time.monotonic()

    def run(self) -> None:
        with _heartbeat(self.runtime, self.model, self.held, self.token):
            for item in self.claimed:
                if self.runtime.stopping.is_set():
                    self._release_rest()
                    return
                structlog.contextvars.bind_contextvars(
                    replicable=self.type_name, record_id=item.record_id,
                    correlation_id=self.token)
                try:
                    self._one(item)
                finally:
                    structlog.contextvars.clear_contextvars()
                if (len(self.done) >= FINISH_GROUP
                        or time.monotonic() - self.last_flush > FINISH_EVERY):
                    self._flush()
            self._flush()

    def _one(self, item: sync_rows.Claimed) -> None:
        started = time.monotonic()
        try:
            if item.tombstone:
                self.replicator.remove(self.runtime.sync_context, item)
                with write_transaction(self.runtime.engine) as conn:
                    sync_rows.finish_deleted(conn, self.model, item, self.token)
                self.held.discard(item.id)
                self._measure(item, "deleted", started)
                log.info("mirror_copy_deleted", path=item.path)
                return
            self.replicator.sync(self.runtime.sync_context, item)
        except Exception as exc:
            settings = self.runtime.settings
            with write_transaction(self.runtime.engine) as conn:
                sync_rows.finish_failed(conn, self.model, item, self.token, exc,
                                       retry_cap=settings.retry_cap_seconds,
                                       missing_cap=settings.missing_retry_cap_seconds)
            self.held.discard(item.id)
            self._measure(item, SyncState.FAILED, started)
            SYNC_RETRIES.labels(self.type_name).inc()
            return
        self.done.append(item)
        self._measure(item, SyncState.SYNCED, started)
        if item.expected_size is not None:
            TRANSFER_BYTES.labels(self.type_name).observe(item.expected_size)
        log.info("synced", path=item.path, seconds=round(time.monotonic() - started, 3))

    def _measure(self, item: sync_rows.Claimed, outcome: str, started: float) -> None:
        TRANSFER_SECONDS.labels(self.type_name, outcome).observe(time.monotonic() - started)
        if outcome != SyncState.FAILED:
            ITEMS_SYNCED.labels(self.type_name).inc()
        self.runtime.note_item_done()

    def _flush(self) -> None:
        if self.done:
            with write_transaction(self.runtime.engine) as conn:
                outdated = sync_rows.finish_synced_many(conn, self.model, self.done,
                                                       self.token)
            if outdated:
                log.info("synced_but_outdated", replicable=self.type_name,
                         paths=[item.path for item in outdated])
            self.held.difference_update(item.id for item in self.done)
            self.done.clear()
        self.last_flush = time.monotonic()

    def _release_rest(self) -> None:
        self._flush()
        with write_transaction(self.runtime.engine) as conn:
            sync_rows.release(conn, self.model, sorted(self.held), self.token)
        log.info("batch_released_on_shutdown", replicable=self.type_name,
                 items=len(self.held))


def sync_items(runtime: Runtime, type_name: str, ids: list[int]) -> None:
    """Claim the still-pending rows among ``ids`` and sync (or delete) each in turn."""
    model = replicator_for(type_name).registry
    token = f"{runtime.worker_id}:{uuid.uuid4().hex[:8]}"
    with write_transaction(runtime.engine) as conn:
        claimed = sync_rows.claim(conn, model, ids, token, runtime.settings.lease_seconds)
    if claimed:
        _Batch(runtime, type_name, claimed, token).run()
