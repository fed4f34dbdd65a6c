"""Job logs: appends fetch only new bytes; a rewritten prefix or bad archive resyncs whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from replicators.base import SyncContext
from replicators.job_log import JobLogReplicator
from tests.replicators.drivers import JobLogDriver
from tests.replicators.test_conformance import _item
from tests.sites import PrimarySite

PATH = "jobs/1.log"


def _setup(served: PrimarySite, ctx: SyncContext, tmp_path: Path) -> tuple[JobLogDriver, Path]:
    driver = JobLogDriver(served, tmp_path)
    driver.create(PATH)
    JobLogReplicator.sync(ctx, _item(PATH))
    return driver, ctx.root(JobLogReplicator) / PATH


def test_an_append_transfers_only_the_new_bytes(served: PrimarySite, ctx: SyncContext,
                                                tmp_path: Path) -> None:
    driver, mirror = _setup(served, ctx, tmp_path)
    # Mark the mirror's first byte (outside the overlap window): a full download would
    # overwrite the mark, an append keeps it.
    data = bytearray(mirror.read_bytes())
    data[0:1] = b"#"
    mirror.write_bytes(bytes(data))
    driver.change(PATH)
    JobLogReplicator.sync(ctx, _item(PATH, 2, mirror_path=PATH))
    primary = (driver.root / PATH).read_bytes()
    assert mirror.read_bytes() == b"#" + primary[1:]


def test_a_mirror_whose_tail_no_longer_matches_is_downloaded_whole(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver, mirror = _setup(served, ctx, tmp_path)
    (driver.root / PATH).write_bytes(b"rewritten log\n" * 500)  # same file, new content
    JobLogReplicator.sync(ctx, _item(PATH, 2, mirror_path=PATH))
    assert mirror.read_bytes() == (driver.root / PATH).read_bytes()


def test_a_primary_log_shorter_than_the_mirror_is_downloaded_whole(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver, mirror = _setup(served, ctx, tmp_path)
    (driver.root / PATH).write_bytes(b"short\n")
    JobLogReplicator.sync(ctx, _item(PATH, 2, mirror_path=PATH))
    assert mirror.read_bytes() == b"short\n"


def test_archiving_checks_the_whole_file_and_repairs_a_wrong_prefix(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver, mirror = _setup(served, ctx, tmp_path)
    data = bytearray(mirror.read_bytes())
    data[0:1] = b"#"
    mirror.write_bytes(bytes(data))  # a corruption the overlap check cannot see
    final = (driver.root / PATH).read_bytes()
    checksum = hashlib.sha256(final).hexdigest()
    driver.publish("archived", PATH, size=len(final), checksum=checksum)
    archived = _item(PATH, 3, mirror_path=PATH)
    archived = archived.__class__(**{**archived.__dict__, "expected_size": len(final),
                                     "expected_checksum": checksum})
    JobLogReplicator.sync(ctx, archived)
    assert hashlib.sha256(mirror.read_bytes()).hexdigest() == checksum
