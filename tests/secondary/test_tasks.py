"""One worker step, ``sync_items``, against a real primary and tracking DB: each
outcome a batch can reach leaves its row in the state the transition table says."""

from __future__ import annotations

from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.tasks import sync_items
from geo_sync.tracking.states import SyncState
from replicators.artifact import ArtifactReplicator
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

