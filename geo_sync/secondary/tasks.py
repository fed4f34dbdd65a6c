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
from replicators.type_map import copy_for

log = get_logger("worker")
#: Successful items are marked synced together, one commit per group: a commit per
#: item was the largest cost per small artifact after the transfer itself.
FINISH_GROUP = 16
FINISH_EVERY = 0.25
#: How long a worker thread goes on claiming pending rows itself after its message's
#: rows are done (a thread that waited for the scheduler's next message sat idle about
#: half the time in an initial sync); bounded so other types' messages get their turn.
CHAIN_SECONDS = 10.0


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
        self.replicator = copy_for(type_name)
        self.model = self.replicator.registry_table
        self.claimed = claimed
        self.token = token
        self.held = {item.id for item in claimed}
        self.done: list[sync_rows.Claimed] = []
        #: Row id -> (sha256, fingerprint) of done copies verified as they arrived.
        self.arrivals: dict[int, tuple[str, str]] = {}
        self.last_flush = time.monotonic()

    def run(self) -> None:
        with _heartbeat(self.runtime, self.model, self.held, self.token):
            for item in [item for item in self.claimed if item.tombstone]:
                if self.runtime.stopping.is_set():
                    self._release_rest()
                    return
                self._bound(item)
                try:
                    self._delete(item)
                finally:
                    structlog.contextvars.clear_contextvars()
            copies = [item for item in self.claimed if not item.tombstone]
            group = max(1, self.replicator.transfer_group)
            for start in range(0, len(copies), group):
                if self.runtime.stopping.is_set():
                    self._release_rest()
                    return
                self._sync_group(copies[start:start + group])
                if (group > 1 or len(self.done) >= FINISH_GROUP
                        or time.monotonic() - self.last_flush > FINISH_EVERY):
                    self._flush()  # a group of transfers: one registry update
            self._flush()

    def _bound(self, item: sync_rows.Claimed | None) -> None:
        structlog.contextvars.bind_contextvars(
            replicable=self.type_name, correlation_id=self.token,
            **({"record_id": item.record_id} if item is not None else {}))

    def _sync_group(self, items: list[sync_rows.Claimed]) -> None:
        started = time.monotonic()
        self._bound(items[0] if len(items) == 1 else None)
        try:
            try:
                results = self.replicator.sync_many(self.runtime.sync_context, items)
            except Exception as exc:  # the group as a whole failed: each item did
                results = {item.id: exc for item in items}
            share = (time.monotonic() - started) / len(items)
            for item in items:
                outcome = results.get(item.id)
                if isinstance(outcome, Exception):
                    self._failed(item, outcome, share)
                    continue
                self.done.append(item)
                if outcome is not None:
                    self.arrivals[item.id] = (outcome.checksum, outcome.fingerprint)
                self._measure(item, SyncState.SYNCED, share)
                if item.expected_size is not None:
                    TRANSFER_BYTES.labels(self.type_name).observe(item.expected_size)
                log.info("synced", path=item.path, record_id=item.record_id,
                         verified=outcome is not None, seconds=round(share, 3))
        finally:
            structlog.contextvars.clear_contextvars()

    def _delete(self, item: sync_rows.Claimed) -> None:
        started = time.monotonic()
        try:
            self.replicator.remove(self.runtime.sync_context, item)
            with write_transaction(self.runtime.engine) as conn:
                sync_rows.finish_deleted(conn, self.model, item, self.token)
        except Exception as exc:
            self._failed(item, exc, time.monotonic() - started)
            return
        self.held.discard(item.id)
        self._measure(item, "deleted", time.monotonic() - started)
        log.info("mirror_copy_deleted", path=item.path)

    def _failed(self, item: sync_rows.Claimed, exc: Exception, seconds: float) -> None:
        settings = self.runtime.settings
        with write_transaction(self.runtime.engine) as conn:
            sync_rows.finish_failed(conn, self.model, item, self.token, exc,
                                   retry_cap=settings.retry_cap_seconds,
                                   missing_cap=settings.missing_retry_cap_seconds)
        self.held.discard(item.id)
        self._measure(item, SyncState.FAILED, seconds)
        SYNC_RETRIES.labels(self.type_name).inc()

    def _measure(self, item: sync_rows.Claimed, outcome: str, seconds: float) -> None:
        TRANSFER_SECONDS.labels(self.type_name, outcome).observe(seconds)
        if outcome != SyncState.FAILED:
            ITEMS_SYNCED.labels(self.type_name).inc()
        self.runtime.note_item_done()

    def _flush(self) -> None:
        if self.done:
            with write_transaction(self.runtime.engine) as conn:
                outdated = sync_rows.finish_synced_many(conn, self.model, self.done,
                                                       self.token, self.arrivals)
            if outdated:
                log.info("synced_but_outdated", replicable=self.type_name,
                         paths=[item.path for item in outdated])
            self.held.difference_update(item.id for item in self.done)
            self.done.clear()
            self.arrivals.clear()
        self.last_flush = time.monotonic()

    def _release_rest(self) -> None:
        self._flush()
        with write_transaction(self.runtime.engine) as conn:
            sync_rows.release(conn, self.model, sorted(self.held), self.token)
        log.info("batch_released_on_shutdown", replicable=self.type_name,
                 items=len(self.held))


def sync_items(runtime: Runtime, type_name: str, ids: list[int]) -> None:
    """Claim the still-pending rows among ``ids`` and sync (or delete) each in turn;
    then, instead of idling until the scheduler's next message, claim as many pending
    rows of the type again, for up to CHAIN_SECONDS."""
    model = copy_for(type_name).registry_table
    token = f"{runtime.worker_id}:{uuid.uuid4().hex[:8]}"
    lease = runtime.settings.lease_seconds
    with write_transaction(runtime.engine) as conn:
        claimed = sync_rows.claim(conn, model, ids, token, lease)
    deadline = time.monotonic() + CHAIN_SECONDS
    while claimed:
        _Batch(runtime, type_name, claimed, token).run()
        if runtime.stopping.is_set() or time.monotonic() > deadline:
            return
        with write_transaction(runtime.engine) as conn:
            claimed = sync_rows.claim_next(conn, model, len(ids), token, lease)
