"""Artifacts: a transfer that does not match the primary's checksum is never installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicators.artifact import ArtifactReplicator
from replicators.base import SyncContext
from replicators.transfer import IntegrityError
from tests.replicators.drivers import ArtifactDriver
from tests.replicators.test_conformance import _item, _no_temp_files
from tests.sites import PrimarySite


def test_bytes_that_do_not_match_the_primarys_checksum_never_reach_the_final_path(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver = ArtifactDriver(served, tmp_path)
    (driver.root / "a.bin").write_bytes(b"the real content")
    driver.publish("created", "a.bin", size=16, checksum="0" * 64)  # a wrong catalog checksum
    with pytest.raises(IntegrityError, match="differs from primary"):
        ArtifactReplicator.sync(ctx, _item("a.bin"))
    assert not (ctx.root(ArtifactReplicator) / "a.bin").exists()
    assert _no_temp_files(ctx.mirror_root)


def test_a_previous_good_copy_survives_a_failed_transfer(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver = ArtifactDriver(served, tmp_path)
    driver.create("a.bin")
    ArtifactReplicator.sync(ctx, _item("a.bin"))
    good = (ctx.root(ArtifactReplicator) / "a.bin").read_bytes()
    driver.publish("created", "a.bin", size=len(good), checksum="1" * 64)
    with pytest.raises(IntegrityError):
        ArtifactReplicator.sync(ctx, _item("a.bin", 2, mirror_path="a.bin"))
    assert (ctx.root(ArtifactReplicator) / "a.bin").read_bytes() == good
