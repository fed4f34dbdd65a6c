"""curl against `geo-sync secondary serve` for artifacts and job logs: verified
copies from the mirror with their checksum as ETag, anything else proxied byte-exact
with Range kept, a corrupted copy never served, stale copies only with the primary
down. On SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.secondary.runtime import Runtime
from tests.secondary.mirror.world import (
    MirrorServer,
    mirror_server,
    publish,
    replicate,
    request_verification,
)
from tests.sites import PrimarySite, SecondarySite
from verification.verifier import verify_items

SYNCED = os.urandom(300_000)


@pytest.fixture
def server(primary: PrimarySite, secondary: SecondarySite, runtime: Runtime
           ) -> Iterator[MirrorServer]:
    publish(primary, "artifact", "created", "p/1/build.zip", SYNCED)
    publish(primary, "job_log", "created", "p/1/job.log", b"line one\n")
    replicate(runtime, "artifact")
    replicate(runtime, "job_log")
    with mirror_server(secondary) as running:
        yield running


def test_a_synced_artifact_is_served_by_the_mirror_with_its_checksum(
    server: MirrorServer
) -> None:
    headers, body, status = server.curl("/artifacts/p/1/build.zip")
    digest = hashlib.sha256(SYNCED).hexdigest()
    assert (status, body) == (200, SYNCED)
    assert headers["x-geo-served-by"] == "mirror"
    assert headers["content-length"] == str(len(SYNCED))
    assert headers["x-geo-checksum-sha256"] == digest
    assert headers["etag"] == f'"{digest}"'
    assert "x-geo-stale" not in headers
    head, empty, status = server.curl("/artifacts/p/1/build.zip", "-I")
    assert (status, head["content-length"], empty) == (200, str(len(SYNCED)), b"")
    log_headers, log, _ = server.curl("/job_logs/p/1/job.log")
    assert (log, log_headers["x-geo-served-by"]) == (b"line one\n", "mirror")


# The server is read only here: sharing it between generated ranges is safe.
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, len(SYNCED) - 1), length=st.integers(1, 70_000))
def test_ranges_of_a_synced_artifact_are_exact(
    server: MirrorServer, start: int, length: int
) -> None:
    end = min(start + length, len(SYNCED)) - 1
    headers, body, status = server.curl("/artifacts/p/1/build.zip",
                                        "-H", f"Range: bytes={start}-{end}")
    assert (status, body) == (206, SYNCED[start:end + 1])
    assert headers["content-range"] == f"bytes {start}-{end}/{len(SYNCED)}"


def test_an_artifact_not_yet_synced_is_proxied_byte_exact_with_range(
    server: MirrorServer, primary: PrimarySite
) -> None:
    fresh = os.urandom(2_500_000)
    publish(primary, "artifact", "created", "p/2/new.zip", fresh)
    headers, body, status = server.curl("/artifacts/p/2/new.zip")
    assert (status, body, headers["x-geo-served-by"]) == (200, fresh, "primary")
    assert headers["x-geo-checksum-sha256"] == hashlib.sha256(fresh).hexdigest()
    headers, body, status = server.curl("/artifacts/p/2/new.zip",
                                        "-H", "Range: bytes=1000000-1999999")
    assert (status, body) == (206, fresh[1_000_000:2_000_000])
    assert headers["content-range"] == f"bytes 1000000-1999999/{len(fresh)}"
    _, _, missing = server.curl("/artifacts/p/2/never.zip")
    assert missing == 404


def test_a_replaced_artifact_is_proxied_until_the_secondary_has_the_new_copy(
    server: MirrorServer, primary: PrimarySite, runtime: Runtime
) -> None:
    publish(primary, "artifact", "created", "p/1/build.zip", b"rebuilt")
    headers, body, _ = server.curl("/artifacts/p/1/build.zip")
    assert (body, headers["x-geo-served-by"]) == (b"rebuilt", "primary")
    replicate(runtime, "artifact")
    headers, body, _ = server.curl("/artifacts/p/1/build.zip")
    assert (body, headers["x-geo-served-by"]) == (b"rebuilt", "mirror")


def test_concurrent_requests_after_a_change_never_get_the_older_copy(
    server: MirrorServer, primary: PrimarySite
) -> None:
    # Runners ask all the time, sharing the mirror's one question to the primary; a
    # request that starts once the change is published must not be served the old
    # copy, however the shared asks fall.
    changed = threading.Event()
    after: list[int] = [0] * 6
    wrong: list[str] = []

    def runner(n: int) -> None:
        while after[n] < 3:
            was_changed = changed.is_set()
            headers, body, _ = server.curl("/artifacts/p/1/build.zip")
            if was_changed:
                after[n] += 1
                if body != b"rebuilt":
                    wrong.append(f"runner {n}: {headers.get('x-geo-served-by')}")
            elif body not in (SYNCED, b"rebuilt"):
                wrong.append(f"runner {n}: neither copy")

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(len(after))]
    for thread in threads:
        thread.start()
    publish(primary, "artifact", "created", "p/1/build.zip", b"rebuilt")
    changed.set()
    for thread in threads:
        thread.join()
    assert wrong == []
    # The pending event names only the artifact: the job log is still the mirror's.
    headers, body, _ = server.curl("/job_logs/p/1/job.log")
    assert (body, headers["x-geo-served-by"]) == (b"line one\n", "mirror")


def test_a_corrupted_copy_is_never_served_from_the_mirror(
    server: MirrorServer, secondary: SecondarySite, runtime: Runtime
) -> None:
    copy = secondary.mirror("artifacts") / "p/1/build.zip"
    data = bytearray(copy.read_bytes())
    data[1234] ^= 0x01
    copy.write_bytes(bytes(data))
    headers, body, _ = server.curl("/artifacts/p/1/build.zip")
    assert (body, headers["x-geo-served-by"]) == (SYNCED, "primary")
    # Detected: the verifier records the mismatch and resyncs; never from the mirror
    # until the copy is right again.
    ids = request_verification(runtime, "artifact")
    outcomes = verify_items(runtime, "artifact", ids)
    assert [o.verdict for o in outcomes] == ["mismatch"]
    headers, body, _ = server.curl("/artifacts/p/1/build.zip")
    assert (body, headers["x-geo-served-by"]) == (SYNCED, "primary")
    secondary.cli("resync", "--failed", "--yes")  # rather than wait for the backoff
    replicate(runtime, "artifact")
    headers, body, _ = server.curl("/artifacts/p/1/build.zip")
    assert (body, headers["x-geo-served-by"]) == (SYNCED, "mirror")


def test_with_the_primary_down_verified_copies_are_served_marked_stale(
    server: MirrorServer, primary: PrimarySite, tmp_path: Path
) -> None:
    publish(primary, "artifact", "created", "p/3/unsynced.zip", b"never copied")
    primary.stop()
    headers, body, status = server.curl("/artifacts/p/1/build.zip")
    assert (status, body) == (200, SYNCED)
    assert (headers["x-geo-served-by"], headers["x-geo-stale"]) == ("mirror", "true")
    _, _, status = server.curl("/artifacts/p/3/unsynced.zip")
    assert status == 503
    _health, _, status = server.curl("/-/health", token="")
    assert status == 200


def test_with_serve_stale_off_the_primary_down_is_a_refusal(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime
) -> None:
    publish(primary, "artifact", "created", "a.zip", b"bytes")
    replicate(runtime, "artifact")
    with mirror_server(secondary, GEO_SYNC_SECONDARY__MIRROR__SERVE_STALE="false") as server:
        primary.stop()
        _headers, body, status = server.curl("/artifacts/a.zip")
        assert status == 503
        assert b"serve_stale is off" in body
        _, body, status = server.curl("/-/health", token="")
        assert status == 503
        assert b"primary unreachable" in body


def test_a_live_job_log_is_served_from_the_mirror_and_completed_from_the_primary(
    server: MirrorServer, primary: PrimarySite
) -> None:
    log_file = primary.storage("job_logs") / "p/1/job.log"
    with log_file.open("ab") as handle:
        handle.write(b"line two\n")
    publish(primary, "job_log", "appended", "p/1/job.log", size=18)
    headers, body, status = server.curl("/job_logs/p/1/job.log")
    assert (status, body) == (200, b"line one\nline two\n")
    assert headers["x-geo-served-by"] == "mirror+primary"
    assert headers["content-length"] == "18"
    headers, body, status = server.curl("/job_logs/p/1/job.log", "-H", "Range: bytes=5-")
    assert (status, body, headers["x-geo-served-by"]) == (206, b"one\nline two\n", "primary")
