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

from sqlalchemy import Connection

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.paths import TEMP_PREFIX
from geo_sync.secondary.bootstrap import Messaging
from geo_sync.secondary.runtime import Runtime
from geo_sync.settings import per_type
from geo_sync.tracking import blockers, sync_rows, verification_rows
from geo_sync.tracking.models import Registry
from replicators.base import Replicator
from replicators.registry import REPLICATORS
from replicators.transfer import remove_path
from verification.sweep import sweep_chunk

log = get_logger("scheduler")


@dataclass
class _Sweep:
    """Where the cheap sweep of one type is: ``after`` is None between sweeps."""

    after: int | None = None
    started: float | None = None


@dataclass
class _Pacing:
    """The continuous re-verification's pace for one type."""

    rows: int = 0
    counted_at: float | None = None
    last: float | None = None
    credit: float = 0.0


@dataclass
class SchedulerPass:
    """What one pass did, for tests and logs."""

    expired: int = 0
    retried: int = 0
    unblocked: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)
    verifying: dict[str, int] = field(default_factory=dict)
    suspicious: dict[str, int] = field(default_factory=dict)


class Scheduler:
    """Periodic recovery and enqueueing; drive it with ``run_once``."""

    def __init__(self, runtime: Runtime, messaging: Messaging) -> None:
        self.runtime = runtime
        self.messaging = messaging
        self._last_janitor = 0.0
        self._last_probe = 0.0
        #: Dependencies ("primary", "storage") a probe last saw failing.
        self.dependencies_down: set[str] = set()
        self._sweeps: dict[str, _Sweep] = {}
        self._pacing: dict[str, _Pacing] = {}
        #: Set when the primary answers again after failing: retry what it blocked.
        self.dependency_recovered = threading.Event()

    def run_once(self) -> SchedulerPass:
        settings = self.runtime.settings
        result = SchedulerPass()
        result.unblocked = self._unblock()
        for replicator in REPLICATORS.values():
            model = replicator.registry
            with write_transaction(self.runtime.engine) as conn:
                expired = sync_rows.release_expired(conn, model)
                retried = sync_rows.retry_due(conn, model)
                limit = per_type(settings.concurrency, replicator.name,
                                 replicator.default_concurrency)
                ids = sync_rows.take_for_enqueue(conn, model, limit,
                                                settings.requeue_after_seconds)
            if expired:
                log.warning("leases_expired", replicable=replicator.name, count=len(expired))
            result.expired += len(expired)
            result.retried += len(retried)
            batch = per_type(settings.batch_size, replicator.name, replicator.default_batch_size)
            for start in range(0, len(ids), batch):
                self.messaging.send(replicator.name, ids[start:start + batch])
            result.enqueued[replicator.name] = len(ids)
            with write_transaction(self.runtime.engine) as conn:
                verification_rows.release_expired(conn, model)
                verification_rows.retry_disabled(conn, model)
                verification_rows.reverify_due(conn, model, settings.reverify_after_seconds,
                                    self._reverify_budget(conn, replicator.name, model))
                to_verify = verification_rows.take_for_verify(
                    conn, model,
                    per_type(settings.verification_concurrency, replicator.name,
                             replicator.default_verification_concurrency),
                    settings.requeue_after_seconds)
            for start in range(0, len(to_verify), batch):
                self.messaging.send_verify(replicator.name, to_verify[start:start + batch])
            result.verifying[replicator.name] = len(to_verify)
            result.suspicious[replicator.name] = self._sweep(replicator)
        if time.monotonic() - self._last_janitor > max(10.0, settings.lease_seconds * 4):
            self._last_janitor = time.monotonic()
            removed = remove_stale_temp_files(settings.mirror_root,
                                              max_age=settings.lease_seconds * 2,
                                              in_use=self._dirs_in_use())
            if removed:
                log.info("stale_temp_files_removed", count=removed)
        return result


    def _reverify_budget(self, conn: Connection, name: str, model: Registry) -> int:
        """How many copies to send to re-verification this pass: the verified rows over
        half the window, so each comes round between half the window and the window
        after its last verification, never in one burst."""
        settings = self.runtime.settings
        pace = self._pacing.setdefault(name, _Pacing())
        now = time.monotonic()
        if pace.counted_at is None or now - pace.counted_at > settings.reverify_after_seconds / 100:
            pace.rows, pace.counted_at = verification_rows.verified_count(conn, model), now
        if pace.last is not None:
            rate = pace.rows / (settings.reverify_after_seconds / 2)
            # Capped: a scheduler that was down does not make up for it in one go.
            pace.credit = min(pace.credit + rate * (now - pace.last), max(rate * 60, 1.0))
        pace.last = now
        budget = int(pace.credit)
        pace.credit -= budget
        return budget

    def _sweep(self, replicator: type[Replicator]) -> int:
        """One chunk of the cheap sweep of ``replicator``'s verified copies (a new sweep
        starts every verification_sweep_interval_seconds); return how many were
        suspicious and sent to full verification."""
        settings = self.runtime.settings
        sweep = self._sweeps.setdefault(replicator.name, _Sweep())
        now = time.monotonic()
        if sweep.after is None:
            if sweep.started is not None and (
                    now - sweep.started < settings.verification_sweep_interval_seconds):
                return 0
            sweep.after, sweep.started = 0, now
        chunk = sweep_chunk(self.runtime.engine, replicator, settings.mirror_root,
                            sweep.after, settings.verification_sweep_chunk)
        sweep.after = chunk.next_after
        if chunk.suspicious:
            log.warning("verification_sweep_suspicious", replicable=replicator.name,
                        count=len(chunk.suspicious), ids=chunk.suspicious[:20])
        return len(chunk.suspicious)

    def _dirs_in_use(self) -> set[Path]:
        """The directories holding a row that a worker's live lease holds: its temp
        files (a clone being staged, a download) sit there and are not stale."""
        root = self.runtime.settings.mirror_root
        dirs = set()
        with self.runtime.engine.connect() as conn:
            for replicator in REPLICATORS.values():
                for path in sync_rows.held_paths(conn, replicator.registry):
                    dirs.add((root / replicator.storage_dir / path).parent)
        return dirs

    def _unblock(self) -> int:
        """Retry at once the rows a site-wide failure blocked, once the primary or the
        mirror's storage answers again. Probed at most every recovery_probe_seconds,
        only while some row waits; a dependency counts as recovered only after a probe
        saw it down (or the cursor saw the primary fail and answer again), so an
        item's own failure that merely looks site-wide keeps its backoff."""
        settings = self.runtime.settings
        recovered = self.dependency_recovered.is_set()
        if not recovered and time.monotonic() - self._last_probe < settings.recovery_probe_seconds:
            return 0
        self.dependency_recovered.clear()
        with self.runtime.engine.connect() as conn:
            waiting = {blocker for blocker in (blockers.PRIMARY, blockers.STORAGE)
                       if any(sync_rows.blocked(conn, r.registry, blocker)
                              for r in REPLICATORS.values())}
        if not waiting:
            self.dependencies_down.clear()
            return 0
        self._last_probe = time.monotonic()
        answers = {
            blockers.PRIMARY: lambda: recovered or self._primary_answers(),
            blockers.STORAGE: lambda: blockers.storage_writable(
                [settings.mirror_root / r.storage_dir for r in REPLICATORS.values()]),
        }
        retried = 0
        for blocker in sorted(waiting):
            if not answers[blocker]():
                self.dependencies_down.add(blocker)
                continue
            if blocker not in self.dependencies_down and not (
                    recovered and blocker == blockers.PRIMARY):
                continue
            self.dependencies_down.discard(blocker)
            with write_transaction(self.runtime.engine) as conn:
                count = sum(len(sync_rows.retry_unblocked(conn, r.registry, blocker))
                            for r in REPLICATORS.values())
            log.info("dependency_recovered", dependency=blocker, retried=count)
            retried += count
        return retried

    def _primary_answers(self) -> bool:
        try:
            self.runtime.client.head()
        except Exception:  # still down: the next probe asks again
            return False
        return True


def remove_stale_temp_files(root: Path, max_age: float, in_use: set[Path] | None = None
                            ) -> int:
    """Delete temp files and directories a killed worker left behind.

    A temp path's life follows the lease of the row that owns it, not its mtime:
    libgit2 does not touch a staging directory's mtime while it writes packs into
    it, so a first clone longer than ``max_age`` looked abandoned and was deleted
    under the worker. A temp path sits beside its row's final path, so none in a
    directory of ``in_use`` (the parents of rows a live lease holds) is touched;
    elsewhere, one older than ``max_age`` has no owner left (its lease ran out).
    """
    cutoff = time.time() - max_age
    busy = {os.path.realpath(path) for path in in_use or ()}
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        names = [n for n in [*filenames, *dirnames] if n.startswith(TEMP_PREFIX)]
        if names and os.path.realpath(dirpath) not in busy:
            for name in names:
                path = Path(dirpath) / name
                try:
                    if path.lstat().st_mtime < cutoff:
                        remove_path(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
    return removed
