"""The scheduler: turns registry state into work, and recovers abandoned work.

Each ``run_once``: rows whose lease expired (their worker died) go back to
pending; failed rows whose retry time came go back to pending; pending rows are
handed to workers in batches, never more per type than its concurrency limit
in flight. It needs no queue state of its own: the registry is the truth.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.paths import TEMP_PREFIX
from geo_sync.secondary import registry
from geo_sync.secondary.bootstrap import Messaging
from geo_sync.secondary.runtime import Runtime
from replicators.registry import REPLICATORS
from replicators.transfer import remove_path
from verification import registry as ledger

log = get_logger("scheduler")


@dataclass
class SchedulerPass:
    """What one pass did, for tests and logs."""

    expired: int = 0
    retried: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)
    verifying: dict[str, int] = field(default_factory=dict)


class Scheduler:
    """Periodic recovery and enqueueing; drive it with ``run_once``."""

    def __init__(self, runtime: Runtime, messaging: Messaging) -> None:
        self.runtime = runtime
        self.messaging = messaging
        self._last_janitor = 0.0
        #: Set when the primary answers again after failing: retry what it blocked.
        self.dependency_recovered = threading.Event()

    def run_once(self) -> SchedulerPass:
        settings = self.runtime.settings
        result = SchedulerPass()
        for replicator in REPLICATORS.values():
            model = replicator.registry
            with write_transaction(self.runtime.engine) as conn:
                expired = registry.release_expired(conn, model)
                retried = registry.retry_due(conn, model)
                limit = getattr(settings.concurrency, replicator.name)
                ids = registry.take_for_enqueue(conn, model, limit,
                                                settings.requeue_after_seconds)
            if expired:
                log.warning("leases_expired", replicable=replicator.name, count=len(expired))
            result.expired += len(expired)
            result.retried += len(retried)
            batch = getattr(settings.batch_size, replicator.name)
            for start in range(0, len(ids), batch):
                self.messaging.send(replicator.name, ids[start:start + batch])
            result.enqueued[replicator.name] = len(ids)
            with write_transaction(self.runtime.engine) as conn:
                ledger.release_expired(conn, model)
                ledger.reverify_due(conn, model, settings.reverify_after_seconds)
                to_verify = ledger.take_for_verify(
                    conn, model,
                    getattr(settings.verification_concurrency, replicator.name, 1),
                    settings.requeue_after_seconds)
            for start in range(0, len(to_verify), batch):
                self.messaging.send_verify(replicator.name, to_verify[start:start + batch])
            result.verifying[replicator.name] = len(to_verify)
        # A temp file older than two leases belongs to a worker that is gone.
        if time.monotonic() - self._last_janitor > max(10.0, settings.lease_seconds * 4):
            self._last_janitor = time.monotonic()
            removed = remove_stale_temp_files(settings.mirror_root,
                                              max_age=settings.lease_seconds * 2)
            if removed:
                log.info("stale_temp_files_removed", count=removed)
        return result


def remove_stale_temp_files(root: Path, max_age: float) -> int:
    """Delete temp files and directories a killed worker left behind."""
    cutoff = time.time() - max_age
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if name.startswith(TEMP_PREFIX):
                path = Path(dirpath) / name
                try:
                    if path.lstat().st_mtime < cutoff:
                        remove_path(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
    return removed
