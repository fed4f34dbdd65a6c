"""One verifier step, ``verify_items``, against a real primary and tracking DB: each
verdict leaves the row where the verification table says, and never blames a copy
for what happened on the primary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geo_sync.db import write_transaction
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.tasks import sync_items
from geo_sync.tracking import verification_rows
from geo_sync.tracking.states import SyncState, Verdict, VerificationState
from tests.sites import PrimarySite
from tests.steps import ARTIFACT, MODEL, apply_events, publish_artifact, row, row_ids
from verification.verifier import verify_items


def _synced(primary: PrimarySite, runtime: Runtime, path: str, content: bytes) -> Path:
    publish_artifact(primary, path, content)
    apply_events(runtime)
    sync_items(runtime, ARTIFACT.name, row_ids(runtime))
    assert row(runtime, path).state == SyncState.SYNCED
    # The copy was verified as it arrived (its sha256 equalled the catalog's): ask for a
    # verification now, as `geo-sync verify` does, so that the step has a row to take.
    with write_transaction(runtime.engine) as conn:
        verification_rows.request(conn, MODEL, row_ids(runtime))
    return runtime.settings.mirror_root / ARTIFACT.storage_dir / path


def _corrupt(copy: Path) -> None:
    data = bytearray(copy.read_bytes())
    data[0] ^= 0xFF
    copy.write_bytes(bytes(data))


def test_an_equal_copy_is_verified_and_its_fingerprint_kept(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _synced(primary, runtime, "v/ok.zip", b"the same bytes")
    outcomes = verify_items(runtime, ARTIFACT.name, row_ids(runtime))
    assert [o.verdict for o in outcomes] == [Verdict.SUCCEEDED]
    found = row(runtime, "v/ok.zip")
    assert found.verification_state == VerificationState.SUCCEEDED
    assert found.verification_checksum == found.expected_checksum
    assert found.verified_at is not None and found.verified_fingerprint


def test_a_corrupt_copy_is_sent_back_to_sync_with_both_checksums_recorded(
    primary: PrimarySite, runtime: Runtime
) -> None:
    copy = _synced(primary, runtime, "v/bad.zip", b"original bytes")
    _corrupt(copy)
    outcomes = verify_items(runtime, ARTIFACT.name, row_ids(runtime))
    assert [o.verdict for o in outcomes] == [Verdict.MISMATCH]
    found = row(runtime, "v/bad.zip")
    assert (found.state, found.verification_state) == (SyncState.FAILED,
                                                       VerificationState.PENDING)
    assert found.mismatch_count == 1 and found.retry_at is not None
    assert found.verification_expected == outcomes[0].primary != outcomes[0].mirror
    assert "checksum mismatch" in found.verification_error


def test_a_copy_still_different_after_the_last_round_needs_an_operator(
    primary: PrimarySite, runtime: Runtime
) -> None:
    copy = _synced(primary, runtime, "v/worse.zip", b"original bytes")
    _corrupt(copy)
    one_round = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"max_mismatch_rounds": 1}))
    outcomes = verify_items(one_round, ARTIFACT.name, row_ids(runtime))
    assert [o.verdict for o in outcomes] == [Verdict.GAVE_UP]
    found = row(runtime, "v/worse.zip")
    assert found.verification_state == VerificationState.FAILED
    assert found.state == SyncState.SYNCED  # no endless resync loop
    assert "needs attention" in found.verification_error


def test_an_item_deleted_on_the_primary_is_postponed_not_blamed(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _synced(primary, runtime, "v/gone.zip", b"soon deleted")
    (primary.storage(ARTIFACT.storage_dir) / "v/gone.zip").unlink()
    publish_artifact(primary, "v/gone.zip", None, event="deleted")  # not applied yet
    outcomes = verify_items(runtime, ARTIFACT.name, row_ids(runtime))
    assert [o.verdict for o in outcomes] == [Verdict.POSTPONED]
    found = row(runtime, "v/gone.zip")
    assert found.verification_state == VerificationState.PENDING
    assert found.mismatch_count == 0 and found.state == SyncState.SYNCED
    assert found.verification_retry_at is not None


def test_rows_not_yet_synced_are_not_verified(primary: PrimarySite, runtime: Runtime) -> None:
    publish_artifact(primary, "v/pending.zip", b"not copied yet")
    apply_events(runtime)
    assert verify_items(runtime, ARTIFACT.name, row_ids(runtime)) == []
    assert row(runtime, "v/pending.zip").verification_state == VerificationState.PENDING
