"""One worker step, ``sync_items``, against a real primary and tracking DB: each
outcome a batch can reach leaves its row in the state the transition table says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from geo_sync.db import utcnow, write_transaction
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.tasks import sync_items
from geo_sync.tracking import sync_rows
from geo_sync.tracking.states import SyncState
from replicators.artifact import ArtifactReplicator
from replicators.repository import RepositoryReplicator
from tests.gitutil import refs
from tests.replicators.drivers import RepositoryDriver
from tests.sites import PrimarySite
from tests.steps import apply_events, publish_artifact, row, row_ids

KIND = ArtifactReplicator.name


def test_a_pending_row_is_copied_and_marked_synced(
    primary: PrimarySite, runtime: Runtime
) -> None:
    publish_artifact(primary, "p/1/a.zip", b"artifact bytes")
    apply_events(runtime)
    assert row(runtime, "p/1/a.zip").state == SyncState.PENDING
    sync_items(runtime, KIND, row_ids(runtime))
    found = row(runtime, "p/1/a.zip")
    assert (found.state, found.claimed_by, found.lease_until) == (SyncState.SYNCED, None, None)
    mirror = runtime.settings.mirror_root / ArtifactReplicator.storage_dir / "p/1/a.zip"
    assert mirror.read_bytes() == b"artifact bytes"


def test_a_message_for_rows_already_synced_changes_nothing(
    primary: PrimarySite, runtime: Runtime
) -> None:
    publish_artifact(primary, "a.zip", b"once")
    apply_events(runtime)
    sync_items(runtime, KIND, row_ids(runtime))
    before = row(runtime, "a.zip")
    sync_items(runtime, KIND, row_ids(runtime))  # a duplicate or stale message
    after = row(runtime, "a.zip")
    assert (after.state, after.updated_at, after.last_synced_at) == (
        before.state, before.updated_at, before.last_synced_at)


def test_an_item_the_primary_cannot_serve_fails_with_a_retry_time_and_the_error(
    primary: PrimarySite, runtime: Runtime
) -> None:
    publish_artifact(primary, "gone.zip", None)
    apply_events(runtime)
    sync_items(runtime, KIND, row_ids(runtime))
    found = row(runtime, "gone.zip")
    assert found.state == SyncState.FAILED
    assert found.retry_count == 1 and found.retry_at is not None
    assert found.last_error and found.claimed_by is None
    assert not (runtime.settings.mirror_root / ArtifactReplicator.storage_dir
                / "gone.zip").exists()


def test_a_delete_event_removes_the_copy_and_its_row(
    primary: PrimarySite, runtime: Runtime
) -> None:
    publish_artifact(primary, "d/x.zip", b"doomed")
    publish_artifact(primary, "d/y.zip", b"neighbour")
    apply_events(runtime)
    sync_items(runtime, KIND, row_ids(runtime))
    (primary.storage(ArtifactReplicator.storage_dir) / "d/x.zip").unlink()
    publish_artifact(primary, "d/x.zip", None, event="deleted")
    apply_events(runtime)
    assert row(runtime, "d/x.zip").tombstone
    sync_items(runtime, KIND, row_ids(runtime))
    mirror = runtime.settings.mirror_root / ArtifactReplicator.storage_dir
    assert row(runtime, "d/x.zip") is None and not (mirror / "d/x.zip").exists()
    assert (mirror / "d/y.zip").read_bytes() == b"neighbour"


def test_a_batch_started_while_stopping_gives_its_rows_back_as_pending(
    primary: PrimarySite, runtime: Runtime
) -> None:
    for name in ("s/1.zip", "s/2.zip"):
        publish_artifact(primary, name, name.encode())
    apply_events(runtime)
    runtime.stopping.set()
    try:
        sync_items(runtime, KIND, row_ids(runtime))
    finally:
        runtime.stopping.clear()
    for name in ("s/1.zip", "s/2.zip"):
        found = row(runtime, name)
        assert (found.state, found.claimed_by) == (SyncState.PENDING, None)



# -- a worker that dies between its copy landing and its finish ----------------------

REPO = RepositoryReplicator


def _repository_row(runtime: Runtime) -> Any:
    with Session(runtime.engine) as session:
        return session.scalars(select(REPO.registry_table)).one()


def _die_after_the_copy_landed(runtime: Runtime) -> None:
    """Claim the repository's row and copy it as a worker does, then vanish without
    finishing (SIGKILL between the rename into place and the registry commit), and
    let the lease run out."""
    model = REPO.registry_table
    with write_transaction(runtime.engine) as conn:
        (claimed,) = sync_rows.claim(conn, model, [_repository_row(runtime).id], "dead", 60)
    REPO.sync(runtime.sync_context, claimed)
    with write_transaction(runtime.engine) as conn:
        sync_rows.release_expired(conn, model, utcnow() + timedelta(minutes=5))


def _published(primary: PrimarySite, runtime: Runtime, tmp_path: Path, path: str
               ) -> RepositoryDriver:
    """A repository created on the primary, its event applied on the secondary."""
    driver = RepositoryDriver(primary, tmp_path)
    driver.create(path)
    apply_events(runtime)
    return driver


def _rename(runtime: Runtime, driver: RepositoryDriver, old: str, new: str, *,
            sync: bool) -> None:
    """Rename on the primary and apply the event; ``sync``: then run a worker step."""
    (driver.root / new).parent.mkdir(parents=True, exist_ok=True)
    (driver.root / old).rename(driver.root / new)
    driver.publish("renamed", new, old_path=old)
    apply_events(runtime)
    if sync:
        sync_items(runtime, REPO.name, [_repository_row(runtime).id])


def _mirrored_repositories(runtime: Runtime) -> list[str]:
    return sorted(REPO.discover(runtime.settings.mirror_root / REPO.storage_dir))


def test_a_first_copy_whose_worker_died_is_moved_by_a_rename_not_orphaned(
    primary: PrimarySite, runtime: Runtime, tmp_path: Path
) -> None:
    driver = _published(primary, runtime, tmp_path, "group/first.git")
    _die_after_the_copy_landed(runtime)
    assert _repository_row(runtime).mirror_path == "group/first.git"
    _rename(runtime, driver, "group/first.git", "moved/first.git", sync=True)
    assert _mirrored_repositories(runtime) == ["moved/first.git"]
    assert refs(runtime.settings.mirror_root / REPO.storage_dir / "moved/first.git") == \
        refs(driver.root / "moved/first.git")


def test_a_copy_moved_by_a_rename_is_found_after_its_worker_died_and_a_second_rename(
    primary: PrimarySite, runtime: Runtime, tmp_path: Path
) -> None:
    driver = _published(primary, runtime, tmp_path, "a/r.git")
    sync_items(runtime, REPO.name, [_repository_row(runtime).id])
    _rename(runtime, driver, "a/r.git", "b/r.git", sync=False)
    _die_after_the_copy_landed(runtime)  # moved a/r.git to b/r.git, then died
    _rename(runtime, driver, "b/r.git", "c/r.git", sync=True)
    found = _repository_row(runtime)
    assert (found.state, found.mirror_path) == (SyncState.SYNCED, "c/r.git")
    assert _mirrored_repositories(runtime) == ["c/r.git"]
