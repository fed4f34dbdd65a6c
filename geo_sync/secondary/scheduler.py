"""The scheduler: turns registry state into work, and recovers abandoned work.

Each ``run_once``: rows whose lease expired (their worker died) go back to
pending; failed rows whose retry time came go back to pending; pending rows are
handed to workers in messages sized by how much is due (``message_sizes``), never
more per type than its concurrency limit in flight; then verification's share
(``verification_enqueuer``), the recovery chores (``janitor``) and folding the row
counts (``row_counts``). Every query reads an index range bounded by the work in
flight, not the table (t0004). On PostgreSQL the registry work of a pass is three
statements on one autocommit connection whatever the number of types: the counts, the
sync work, the verification work (``pass_work``). It needs no queue state of its own:
the registry is the truth.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Connection

from geo_sync.logging import get_logger
from geo_sync.secondary.bootstrap import Messaging
from geo_sync.secondary.janitor import DependencyProbe, Janitor
from geo_sync.secondary.message_sizes import messages
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.verification_enqueuer import VerificationEnqueuer
from geo_sync.settings import per_type
from geo_sync.tracking import pass_work, row_counts
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
        result = SchedulerPass()
        # One statement says which steps have rows to act on: a type with nothing
        # started, failed or pending costs no query at all (rows changed after this
        # read are seen by the next pass, which their writer wakes or the interval runs).
        # Then one statement hands out the sync work of every type, one the
        # verification work (``pass_work``), all on one connection.
        with pass_work.connect(self.runtime.engine) as conn:
            counted = pass_work.counts(conn)
            result.unblocked = self.probe.run_once(counted)
            if result.unblocked:
                counted = pass_work.counts(conn)
            batches = {replicator.name: per_type(self.runtime.settings.batch_size,
                                                 replicator.name,
                                                 replicator.default_batch_size)
                       for replicator in copies()}
            self._sync(conn, counted, batches, result)
            for name, (verifying, suspicious) in self.verification.run_once(
                    conn, counted, batches).items():
                result.verifying[name] = verifying
                result.suspicious[name] = suspicious
        result.temp_files_removed = self.janitor.run_once()
        # Keep the counts table short for whoever reads it (status, /metrics).
        row_counts.fold(self.runtime.engine, over=FOLD_OVER, waiting=counted.deltas)
        return result

    def _sync(self, conn: Connection, counted: row_counts.Snapshot, batches: dict[str, int],
              result: SchedulerPass) -> None:
        """Lapsed leases and due retries back to pending, then pending rows sent to the
        workers, for every type whose counts show rows started, failed or pending."""
        settings = self.runtime.settings
        asks = {}
        for replicator in copies():
            in_state = Counter[str]()
            for (state, _), number in counted.of(
                    replicator.registry_table.__tablename__).items():  # type: ignore[attr-defined]
                in_state[state] += number
            if in_state[SyncState.STARTED] or in_state[SyncState.FAILED] or \
                    in_state[SyncState.PENDING]:
                asks[replicator.name] = pass_work.SyncAsk(
                    replicator.registry_table,
                    per_type(settings.concurrency, replicator.name,
                             replicator.default_concurrency),
                    started=bool(in_state[SyncState.STARTED]),
                    failed=bool(in_state[SyncState.FAILED]),
                    pending=bool(in_state[SyncState.PENDING]))
        work = pass_work.take_sync_work(conn, list(asks.values()),
                                        settings.requeue_after_seconds)
        for replicator in copies():
            done = work.get(replicator.registry_table.__tablename__,  # type: ignore[attr-defined]
                            pass_work.SyncWork([], [], []))
            if done.expired:
                log.warning("leases_expired", replicable=replicator.name,
                            count=len(done.expired))
            result.expired += len(done.expired)
            result.retried += len(done.retried)
            for message in messages(done.taken, batches[replicator.name],
                                    settings.worker_threads):
                self.messaging.send(replicator.name, message)
            result.enqueued[replicator.name] = len(done.taken)
