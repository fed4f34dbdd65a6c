"""Recovering from what a dead worker or a site-wide outage left behind: stale temp
files removed (never under a live lease), and rows a dependency blocked retried as
soon as the primary or the mirror's storage answers again."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from geo_sync.db import write_transaction
from geo_sync.logging import get_logger
from geo_sync.paths import TEMP_PREFIX
from geo_sync.secondary.runtime import Runtime
from geo_sync.tracking import blockers, row_counts, sync_rows
from geo_sync.tracking.states import SyncState
from replicators.transfer import remove_path
from replicators.type_map import REPLICATORS

log = get_logger("scheduler")


class Janitor:
    """Removes stale temp files at most every few lease periods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._last_run = 0.0

    def run_once(self) -> int:
        """Temp paths removed (0 when it is not time yet)."""
        settings = self.runtime.settings
        if time.monotonic() - self._last_run <= max(10.0, settings.lease_seconds * 4):
            return 0
        self._last_run = time.monotonic()
        removed = remove_stale_temp_files(settings.mirror_root,
                                          max_age=settings.lease_seconds * 2,
                                          in_use=self._dirs_in_use())
        if removed:
            log.info("stale_temp_files_removed", count=removed)
        return removed

    def _dirs_in_use(self) -> set[Path]:
        """The directories holding a row that a worker's live lease holds: its temp
        files (a clone being staged, a download) sit there and are not stale."""
        root = self.runtime.settings.mirror_root
        dirs = set()
        with self.runtime.engine.connect() as conn:
            for replicator in REPLICATORS.values():
                for path in sync_rows.held_paths(conn, replicator.registry_table):
                    dirs.add((root / replicator.storage_dir / path).parent)
        return dirs


class DependencyProbe:
    """Notices the primary or the mirror's storage answering again after an outage."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._last_probe = 0.0
        #: Dependencies ("primary", "storage") a probe last saw failing.
        self.dependencies_down: set[str] = set()
        #: Set when the primary answers again after failing: retry what it blocked.
        self.dependency_recovered = threading.Event()

    def run_once(self, counted: row_counts.Snapshot | None = None) -> int:
        """Rows retried because what blocked them answers again (``counted``: the
        registries' counts, if the caller has them: only registries holding failed
        rows are looked at)."""
        return self._unblock(counted)

    def _unblock(self, counted: row_counts.Snapshot | None) -> int:
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
        failing = [r.registry_table for r in REPLICATORS.values()
                   if counted is None or any(
                       state == SyncState.FAILED and rows for (state, _), rows in
                       counted.of(r.registry_table.__tablename__).items())]  # type: ignore[attr-defined]
        with self.runtime.engine.connect() as conn:
            waiting = {blocker for blocker in (blockers.PRIMARY, blockers.STORAGE)
                       if any(sync_rows.blocked(conn, table, blocker) for table in failing)}
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
                count = sum(len(sync_rows.retry_unblocked(conn, r.registry_table, blocker))
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
