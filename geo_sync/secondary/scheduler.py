"""The scheduler: turns registry state into work, and recovers abandoned work.

Each ``run_once``: rows whose lease expired (their worker died) go back to
pending; failed rows whose retry time came go back to pending; pending rows are
handed to workers in messages sized by how much is due (``message_sizes``), never
more per type than its concurrency limit in flight; then verification's share
(``verification_enqueuer``), the recovery chores (``janitor``) and folding the row
counts (``row_counts``). Every query reads an index range bounded by the work in
flight, not the table (t0004). It needs no queue state of its own: the registry is the truth.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.secondary.bootstrap import Messaging
from geo_sync.secondary.janitor import DependencyProbe, Janitor
from geo_sync.secondary.message_sizes import messages
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.verification_enqueuer import VerificationEnqueuer
from geo_sync.settings import per_type
from geo_sync.tracking import row_counts, sync_rows
from geo_sync.tracking.states import SyncState
from replicators.type_map import copies

log = get_logger("scheduler")
#: Deltas in the row counts table before a pass folds them (reading them costs little).
FOLD_OVER = 200


@dataclass
class SchedulerPass:
    """What one pass did, for tests and logs."""

    expired: int = 0
    retried: int = 0
    unblocked: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)
    verifying: dict[str, int] = field(default_factory=dict)
    suspicious: dict[str, int] = field(default_factory=dict)
    temp_files_removed: int = 0


class Scheduler:
    """One pass over every type: sync work (here), verification work
    (``VerificationEnqueuer``), blocked rows (``DependencyProbe``) and stale temp
    files (``Janitor``); drive it with ``run_once``."""

    def __init__(self, runtime: Runtime, messaging: Messaging) -> None:
        self.runtime = runtime
        self.messaging = messaging
        self.verification = VerificationEnqueuer(runtime, messaging)
        self.probe = DependencyProbe(runtime)
        self.janitor = Janitor(runtime)

    @property
    def dependencies_down(self) -> set[str]:
        return self.probe.dependencies_down

    @property
    def dependency_recovered(self) -> threading.Event:
        return self.probe.dependency_recovered

    def run_once(self) -> SchedulerPass:
        settings = self.runtime.settings
        result = SchedulerPass()
        # One statement says which steps have rows to act on: a type with nothing
        # started, failed or pending costs no query at all (rows changed after this
        # read are seen by the next pass, which their writer wakes or the interval runs).
        with self.runtime.engine.connect() as conn:
            counted = row_counts.snapshot(conn)
        result.unblocked = self.probe.run_once(counted)
        if result.unblocked:
            with self.runtime.engine.connect() as conn:
                counted = row_counts.snapshot(conn)
        for replicator in copies():
            model = replicator.registry_table
            rows = counted.of(model.__tablename__)  # type: ignore[attr-defined]
            in_state = Counter[str]()
            for (state, _), number in rows.items():
                in_state[state] += number
            expired: list[int] = []
            retried: list[int] = []
            ids: list[int] = []
            if in_state[SyncState.STARTED] or in_state[SyncState.FAILED] or \
                    in_state[SyncState.PENDING]:
                with write_transaction(self.runtime.engine) as conn:
                    if in_state[SyncState.STARTED]:
                        expired = sync_rows.release_expired(conn, model)
                    if in_state[SyncState.FAILED]:
                        retried = sync_rows.retry_due(conn, model)
                    if in_state[SyncState.PENDING] or expired or retried:
                        limit = per_type(settings.concurrency, replicator.name,
                                         replicator.default_concurrency)
                        ids = sync_rows.take_for_enqueue(conn, model, limit,
                                                         settings.requeue_after_seconds)
            if expired:
                log.warning("leases_expired", replicable=replicator.name, count=len(expired))
            result.expired += len(expired)
            result.retried += len(retried)
            batch = per_type(settings.batch_size, replicator.name, replicator.default_batch_size)
            for message in messages(ids, batch, settings.worker_threads):
                self.messaging.send(replicator.name, message)
            result.enqueued[replicator.name] = len(ids)
            verifying, suspicious = self.verification.run_once(replicator, batch, rows)
            result.verifying[replicator.name] = verifying
            result.suspicious[replicator.name] = suspicious
        result.temp_files_removed = self.janitor.run_once()
        # Keep the counts table short for whoever reads it (status, /metrics).
        row_counts.fold(self.runtime.engine, over=FOLD_OVER, waiting=counted.deltas)
        return result
