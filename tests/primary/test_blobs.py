"""Blob download: Range, size and checksum headers, missing-on-primary, hostile paths."""

from __future__ import annotations

import hashlib
import os

import pytest

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from tests.sites import PrimarySite


def _store(site: PrimarySite, relpath: str, data: bytes, type_name: str = "artifact") -> str:
    path = site.storage("artifacts" if type_name == "artifact" else "job_logs") / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    checksum = hashlib.sha256(data).hexdigest()
    with write_transaction(site.engine) as conn:
        publish(conn, Change(type_name, "created", relpath, size=len(data), checksum=checksum))
    return checksum


def test_a_large_blob_streams_whole_with_size_and_checksum_headers(primary: PrimarySite) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    checksum = _store(primary, "build/1/out.zip", data)
    digest = hashlib.sha256()
    with primary.client() as client, client.stream(
        "GET", "/blobs/artifact/build/1/out.zip", headers=primary.headers()
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            digest.update(chunk)
    assert response.headers["x-geo-size"] == str(len(data))
    assert response.headers["x-geo-checksum-sha256"] == checksum
    assert digest.hexdigest() == checksum


def test_range_requests_return_exactly_the_asked_bytes(primary: PrimarySite) -> None:
    data = bytes(range(256)) * 100
    _store(primary, "job/7.log", data, type_name="job_log")
    with primary.client() as client:
        tail = client.get("/blobs/job_log/job/7.log",
                          headers={**primary.headers(), "Range": "bytes=25000-"})
        middle = client.get("/blobs/job_log/job/7.log",
                            headers={**primary.headers(), "Range": "bytes=10-19"})
        beyond = client.get("/blobs/job_log/job/7.log",
                            headers={**primary.headers(), "Range": f"bytes={len(data)}-"})
    assert tail.status_code == 206
    assert tail.content == data[25000:]
    assert tail.headers["content-range"] == f"bytes 25000-{len(data) - 1}/{len(data)}"
    assert middle.content == data[10:20]
    assert beyond.status_code == 416


def test_a_file_that_changed_since_its_catalog_entry_carries_no_stale_checksum(
    primary: PrimarySite,
) -> None:
    _store(primary, "live.log", b"line 1\n", type_name="job_log")
    with (primary.storage("job_logs") / "live.log").open("ab") as handle:
        handle.write(b"line 2\n")
    with primary.client() as client:
        response = client.get("/blobs/job_log/live.log", headers=primary.headers())
    assert response.content == b"line 1\nline 2\n"
    assert response.headers["x-geo-size"] == "14"
    assert "x-geo-checksum-sha256" not in response.headers


def test_a_missing_blob_is_reported_as_missing_on_primary(primary: PrimarySite) -> None:
    with primary.client() as client:
        response = client.get("/blobs/artifact/gone.bin", headers=primary.headers())
        wrong_type = client.get("/blobs/nope/gone.bin", headers=primary.headers())
    assert response.status_code == 404
    assert response.json()["error"] == "missing_on_primary"
    assert response.headers["x-geo-missing-on-primary"] == "true"
    assert wrong_type.status_code == 400
    assert "x-geo-missing-on-primary" not in wrong_type.headers


@pytest.mark.parametrize("raw_path", [
    "/blobs/artifact/%2e%2e/%2e%2e/etc/passwd",
    "/blobs/artifact/a/%2e%2e/b",
    "/blobs/artifact//etc/passwd",
    "/blobs/artifact/a%00b",
    "/blobs/artifact/a%5c..%5cb",
])
def test_hostile_blob_paths_are_refused(primary: PrimarySite, raw_path: str) -> None:
    with primary.client() as client:
        response = client.get(raw_path, headers=primary.headers())
    assert response.status_code in (400, 404)
    if response.status_code == 404:  # the router rejected it before us: still nothing served
        assert "root:" not in response.text
    else:
        assert response.json()["error"] == "invalid_request"


def test_a_symlink_escaping_the_storage_root_is_not_followed(primary: PrimarySite,
                                                             tmp_path: os.PathLike[str]) -> None:
    secret = primary.config.parent / "outside.txt"
    secret.write_text("top secret")
    (primary.storage("artifacts") / "escape").symlink_to(primary.config.parent)
    with primary.client() as client:
        response = client.get("/blobs/artifact/escape/outside.txt", headers=primary.headers())
    assert response.status_code == 400
    assert "outside its storage root" in response.json()["message"]
    assert "top secret" not in response.text
