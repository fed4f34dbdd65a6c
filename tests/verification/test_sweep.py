"""The cheap sweep and the continuous re-verification: corruption on the mirror is
found and repaired with no event and no operator, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pygit2
import pytest
from sqlalchemy import func, select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.errors import GeoSyncError
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary import bootstrap
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.secondary.scheduler import Scheduler
from geo_sync.workload import Workload
from replicators.artifact import ArtifactRegistry
from replicators.type_map import REPLICATORS
from tests.compare import differences
from tests.deployment import wait_for
from tests.gitutil import git
from tests.secondary.test_scheduler import drain
from tests.services import temporary_database
from tests.sites import PrimarySite, primary_site, secondary_site
from verification.sweep import sweep_chunk

# Full re-verification as by default (a day): only the sweep can find these in time.
SWEEP = {"verification_sweep_interval_seconds": 1.0, "lease_seconds": 5.0}


class Mirror:
    """A primary, a secondary runtime and a scheduler driven pass by pass."""

    def __init__(self, primary: PrimarySite, runtime: Runtime, scratch: Path) -> None:
        self.primary = primary
        self.runtime = runtime
        self.messaging = bootstrap.setup(runtime.settings)
        self.scheduler = Scheduler(runtime, self.messaging)
        self.cursor = LogCursor(runtime)
        self.workload = Workload(primary.settings.storage_root, scratch, self._publish)
        self.corrupted_at = utcnow()

    def _publish(self, change: Change) -> None:
        with write_transaction(self.primary.engine) as conn:
            publish(conn, change)

    def step(self) -> None:
        self.cursor.run_once(wait=0)
        self.scheduler.run_once()
        drain(self.messaging, self.runtime)

    def unverified(self) -> int:
        with self.runtime.engine.connect() as conn:
            return sum(conn.execute(select(func.count()).where(
                r.registry_table.verification_state != "succeeded")).scalar_one()
                for r in REPLICATORS.values())

    def equal(self) -> bool:
        return not differences(self.primary.settings.storage_root,
                               self.runtime.settings.mirror_root)

    def intact(self) -> bool:
        """Equal to the primary, and every repository's refs point at objects it has."""
        repos = self.runtime.settings.mirror_root / "repositories"
        try:
            for repo in repos.glob("*/*.git"):
                REPLICATORS["repository"].mirror_checksum(repo)
        except GeoSyncError:
            return False
        return self.equal()

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        def stepped() -> bool:
            self.step()
            return condition()
        wait_for(stepped, what, timeout=120)

    def path(self, type_dir: str, relpath: str) -> Path:
        return self.runtime.settings.mirror_root / type_dir / relpath


@pytest.fixture(params=["sqlite", "postgres"])
def mirror(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mirror]:
    """A mirror of a small CI site, synced and verified."""
    with ExitStack() as stack:
        postgres = request.param == "postgres"
        primary_url = stack.enter_context(temporary_database()) if postgres else None
        primary = stack.enter_context(primary_site(tmp_path / "primary", primary_url))
        url = stack.enter_context(temporary_database("geo_tracking")) if postgres else None
        secondary = secondary_site(tmp_path / "secondary", primary, url, **SWEEP)
        stack.callback(secondary.engine.dispose)
        runtime = open_runtime(secondary.settings)
        stack.callback(runtime.close)
        built = Mirror(primary, runtime, tmp_path / "scratch")
        built.workload.initial(repositories=3, artifacts=3, logs=1)
        built.workload.archive_log("jobs/0/trace.log")
        built.wait(lambda: built.equal() and built.unverified() == 0,
                   "everything synced and verified")
        built.corrupted_at = utcnow()
        yield built


def _flip_a_byte_and_touch(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, (time.time() + 5, time.time() + 5))  # a different mtime, surely


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _remove_packs(repo: Path) -> None:
    packs = list((repo / "objects" / "pack").glob("pack-*"))
    assert packs, "the mirror's repository has no pack to remove"
    for pack in packs:
        pack.unlink()


def _head_commit(repo: Path) -> str:
    return str(pygit2.Repository(str(repo)).head.target)


def _move_a_ref(repo: Path) -> None:
    git("update-ref", "refs/heads/moved", _head_commit(repo), cwd=repo)
    branch = pygit2.Repository(str(repo)).head.name
    git("update-ref", "-d", branch, cwd=repo)


def _add_a_ref(repo: Path) -> None:
    git("update-ref", "refs/heads/extra", _head_commit(repo), cwd=repo)


CORRUPTIONS: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    "a deleted artifact": ("artifacts", "pipelines/0/artifacts.zip", Path.unlink),
    "a truncated log": ("job_logs", "jobs/0/trace.log", _truncate),
    "a flipped byte with a touched mtime": ("artifacts", "pipelines/1/artifacts.zip",
                                            _flip_a_byte_and_touch),
    "a removed pack": ("repositories", "group0/project0.git", _remove_packs),
    "a moved ref": ("repositories", "group1/project1.git", _move_a_ref),
    "an extra ref": ("repositories", "group0/project2.git", _add_a_ref),
}


def test_corruption_six_ways_is_found_and_repaired_without_an_event_or_an_operator(
    mirror: Mirror,
) -> None:
    # Re-verification is a day away and no event comes: only the sweep can find them.
    for name, (type_dir, relpath, corrupt) in CORRUPTIONS.items():
        corrupt(mirror.path(type_dir, relpath))
        assert not mirror.intact(), f"{name} did not corrupt the mirror"
    mirror.wait(lambda: mirror.intact() and mirror.unverified() == 0,
                "every corruption to be found by the sweep and repaired")
    with mirror.runtime.engine.connect() as conn:
        resynced = {row.path for r in REPLICATORS.values() for row in conn.execute(
            select(r.registry_table.path).where(r.registry_table.verified_at.is_not(None),
                                          r.registry_table.last_synced_at > mirror.corrupted_at))}
    assert {relpath for _, relpath, _ in CORRUPTIONS.values()} <= resynced


def test_an_unchanged_mirror_is_never_suspicious(mirror: Mirror) -> None:
    for replicator in REPLICATORS.values():
        chunk = sweep_chunk(mirror.runtime.engine, replicator,
                            mirror.runtime.settings.mirror_root, 0, 1000)
        assert chunk.checked > 0 and chunk.suspicious == [], replicator.name


def test_the_sweep_walks_a_large_table_in_bounded_chunks(mirror: Mirror) -> None:
    artifacts = REPLICATORS["artifact"]
    seen, after, chunks = 0, 0, 0
    while True:
        chunk = sweep_chunk(mirror.runtime.engine, artifacts,
                            mirror.runtime.settings.mirror_root, after, 1)
        assert chunk.checked <= 1
        seen, chunks = seen + chunk.checked, chunks + 1
        if chunk.next_after is None:
            break
        after = chunk.next_after
    assert seen == 3 and chunks >= 3


def test_every_copy_is_verified_again_within_the_window_at_a_bounded_pace(
    mirror: Mirror,
) -> None:
    # As if verified a whole window ago: all due at once, yet taken a few at a time.
    with write_transaction(mirror.runtime.engine) as conn:
        conn.execute(update(ArtifactRegistry).values(
            verified_at=utcnow() - timedelta(days=2)))
    window = mirror.runtime.settings.reverify_after_seconds
    assert window == 86400.0, "the default window is a day"
    first = Scheduler(mirror.runtime, mirror.messaging).run_once()
    assert sum(first.verifying.values()) == 0, "a burst: re-verification is not paced"
    with mirror.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(
            ArtifactRegistry.verification_state == "pending")).scalar_one() == 0


def test_copies_verified_before_fingerprints_existed_adopt_one_without_a_burst(
    mirror: Mirror,
) -> None:
    with write_transaction(mirror.runtime.engine) as conn:
        conn.execute(update(ArtifactRegistry).values(verified_fingerprint=None))
    chunk = sweep_chunk(mirror.runtime.engine, REPLICATORS["artifact"],
                        mirror.runtime.settings.mirror_root, 0, 1000)
    assert chunk.adopted == 3 and chunk.suspicious == []
    shutil.rmtree(mirror.path("artifacts", "pipelines/2"))
    chunk = sweep_chunk(mirror.runtime.engine, REPLICATORS["artifact"],
                        mirror.runtime.settings.mirror_root, 0, 1000)
    assert len(chunk.suspicious) == 1
