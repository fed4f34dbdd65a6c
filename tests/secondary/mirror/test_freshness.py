"""A small copy is read where it is decided, and only when the bytes read are those
of the file verified: a copy replaced or rewritten after verification is refused."""

from __future__ import annotations

import os
from pathlib import Path

from geo_sync.secondary.mirror.freshness import SMALL_BODY, Copy, with_small_body
from replicators.artifact import ArtifactReplicator


def _verified(file: Path) -> Copy:
    return Copy(file, None, file.stat().st_size, "sq1;1", True, True, "synced and verified",
                "r1", fingerprint=ArtifactReplicator.fingerprint(file))


def test_a_small_verified_copy_is_read_with_its_stat(tmp_path: Path) -> None:
    file = tmp_path / "a.zip"
    file.write_bytes(b"verified bytes")
    copy = with_small_body(ArtifactReplicator, _verified(file))
    assert (copy.servable, copy.body) == (True, b"verified bytes")
    assert copy.stat is not None and copy.stat.st_ino == file.stat().st_ino


def test_a_copy_replaced_or_rewritten_since_verification_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "a.zip"
    file.write_bytes(b"verified bytes")
    copy = _verified(file)
    newer = tmp_path / "a.zip.tmp"
    newer.write_bytes(b"a newer change")  # the same size: only the stat tells
    os.utime(newer, ns=(1, 1))
    os.replace(newer, file)
    refused = with_small_body(ArtifactReplicator, copy)
    assert (refused.servable, refused.body) == (False, None)
    assert refused.reason == "copy changed on disk since it was verified"
    file.unlink()
    assert not with_small_body(ArtifactReplicator, copy).servable


def test_a_large_copy_is_left_to_be_sent_from_its_path(tmp_path: Path) -> None:
    file = tmp_path / "big.bin"
    file.write_bytes(b"x" * (SMALL_BODY + 1))
    copy = with_small_body(ArtifactReplicator, _verified(file))
    assert (copy.servable, copy.body) == (True, None)
