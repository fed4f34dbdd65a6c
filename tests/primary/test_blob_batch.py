"""The blob batch endpoint: many blobs in one response, each with its size, the
catalog's checksum and record id; missing and too-large ones said so; bad bodies a
400 naming what was wrong."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.wire import BATCH_INLINE_MAX, BATCH_MAX_PATHS, BatchEntry, read_batch
from tests.sites import PrimarySite


def _store(site: PrimarySite, relpath: str, data: bytes, *, catalog: bytes | None = None
           ) -> str:
    """Write ``data`` and publish it with the size and checksum of ``catalog`` (default:
    of ``data``); the published checksum."""
    path = site.storage("artifacts") / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    described = data if catalog is None else catalog
    checksum = hashlib.sha256(described).hexdigest()
    with write_transaction(site.engine) as conn:
        publish(conn, Change("artifact", "created", relpath, record_id=f"rec:{relpath}",
                             size=len(described), checksum=checksum))
    return checksum


def _batch(site: PrimarySite, body: object, type_name: str = "artifact") -> httpx.Response:
    with site.client() as client:
        return client.post(f"/blob-batch/{type_name}", json=body, headers=site.headers())


def test_a_batch_answers_every_path_in_order_with_its_bytes_size_checksum_and_record(
    primary: PrimarySite,
) -> None:
    blobs = {f"b/{n}.bin": os.urandom(n * 1000) for n in range(5)}  # 0 bytes included
    checksums = {path: _store(primary, path, data) for path, data in blobs.items()}
    grown = _store(primary, "grown.log", b"one\n")
    (primary.storage("artifacts") / "grown.log").write_bytes(b"one\ntwo\n")
    big = primary.storage("artifacts") / "big.bin"
    big.write_bytes(b"x" * (BATCH_INLINE_MAX + 1))
    paths = ["b/3.bin", "gone.bin", *blobs, "grown.log", "big.bin", "b/3.bin"]
    response = _batch(primary, {"paths": paths})
    assert response.status_code == 200, response.text
    entries = list(read_batch([response.content]))
    assert [entry.path for entry, _data in entries] == paths
    by_path = {entry.path: (entry, data) for entry, data in entries}
    for path, data in blobs.items():
        entry, received = by_path[path]
        assert received == data
        assert entry == BatchEntry(path, "ok", len(data), checksums[path], f"rec:{path}")
    assert by_path["gone.bin"] == (BatchEntry("gone.bin", "missing"), b"")
    # Grown since its catalog entry: the bytes as they are now, no stale checksum.
    assert by_path["grown.log"] == (BatchEntry("grown.log", "ok", 8, None, "rec:grown.log"),
                                    b"one\ntwo\n")
    assert grown != hashlib.sha256(b"one\ntwo\n").hexdigest()
    assert by_path["big.bin"] == (BatchEntry("big.bin", "too_large", BATCH_INLINE_MAX + 1),
                                  b"")


@pytest.mark.parametrize(("body", "named"), [
    ({}, "paths"),
    ({"paths": []}, "paths"),
    ({"paths": "a.bin"}, "paths"),
    ({"paths": ["a.bin"] * (BATCH_MAX_PATHS + 1)}, "paths"),
    ({"paths": ["a.bin", 7]}, "paths[1]"),
    ({"paths": ["a.bin", "../etc/passwd"]}, "paths[1]"),
    ({"paths": ["/abs"]}, "paths[0]"),
    (["a.bin"], "paths"),
])
def test_a_malformed_batch_body_is_a_400_naming_the_field(
    primary: PrimarySite, body: object, named: str
) -> None:
    response = _batch(primary, body)
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]


def test_a_batch_of_a_type_served_over_git_or_unknown_is_refused(primary: PrimarySite) -> None:
    assert _batch(primary, {"paths": ["a.git"]}, "repository").status_code == 400
    assert _batch(primary, {"paths": ["a"]}, "nope").status_code == 400


def test_a_batch_needs_a_token_and_a_bounded_body(primary: PrimarySite) -> None:
    with primary.client() as client:
        anonymous = client.post("/blob-batch/artifact", json={"paths": ["a.bin"]})
        huge = client.post("/blob-batch/artifact", headers=primary.headers(),
                           content=b'{"paths": ["' + b"a" * (2 * 1024 * 1024) + b'"]}')
        not_json = client.post("/blob-batch/artifact", headers=primary.headers(),
                               content=b"paths=a.bin")
    assert anonymous.status_code == 401
    assert huge.status_code == 413
    assert not_json.status_code == 400 and "paths" in not_json.json()["message"]


def test_a_batch_serves_nothing_through_a_symlink_leaving_the_storage_root(
    primary: PrimarySite,
) -> None:
    secret = primary.config.parent / "outside.txt"
    secret.write_text("top secret")
    root = primary.storage("artifacts")
    _store(primary, "d/kept.bin", b"kept")
    (root / "escape").symlink_to(primary.config.parent)
    (root / "d" / "leak.txt").symlink_to(secret)
    # Directories are resolved once per batch: the same directory asked again, in
    # between and after the escapes, still answers each path on its own.
    paths = ["d/kept.bin", "escape/outside.txt", "d/leak.txt", "d/kept.bin",
             "escape/outside.txt"]
    response = _batch(primary, {"paths": paths})
    assert response.status_code == 200, response.text
    entries = list(read_batch([response.content]))
    assert [(entry.path, entry.status, data) for entry, data in entries] == [
        ("d/kept.bin", "ok", b"kept"), ("escape/outside.txt", "missing", b""),
        ("d/leak.txt", "missing", b""), ("d/kept.bin", "ok", b"kept"),
        ("escape/outside.txt", "missing", b"")]
    assert b"top secret" not in response.content
