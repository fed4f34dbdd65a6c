"""A worker syncing small blobs in batches: one request and one registry update per
group, copies verified as they arrive (no second fetch), and a corrupt or short blob
in the middle of a batch failing alone: the rest land, it is retried, nothing
half-written is visible. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from geo_sync.db import utcnow, write_transaction
from geo_sync.paths import TEMP_PREFIX
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.runtime import Runtime, open_runtime
from geo_sync.secondary.tasks import sync_items
from geo_sync.tracking import event_rows, sync_rows
from geo_sync.tracking.event_rows import NetChange
from geo_sync.tracking.models import Registry
from replicators.artifact import ArtifactRegistry
from replicators.job_log import JobLogRegistry
from tests.sites import PrimarySite, SecondarySite


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    opened = open_runtime(secondary.settings)
    yield opened
    opened.close()


def _publish(primary: PrimarySite, type_name: str, files: dict[str, bytes],
             described: dict[str, bytes]) -> list[NetChange]:
    root = primary.storage("artifacts" if type_name == "artifact" else "job_logs")
    changes = []
    with write_transaction(primary.engine) as conn:
        for path, data in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
            meant = described.get(path, data)
            checksum = hashlib.sha256(meant).hexdigest()
            publish(conn, Change(type_name, "created", path, size=len(meant),
                                 checksum=checksum))
            changes.append(NetChange(path, path, False, len(meant), checksum))
    return changes


def _rows(runtime: Runtime, model: Registry) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        return {row.path: row for row in conn.execute(select(model.__table__)).all()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [ArtifactRegistry, JobLogRegistry])
def test_a_corrupt_and_a_short_blob_mid_batch_fail_alone_and_the_rest_land_verified(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime,
    model: Registry,
) -> None:
    type_name = "artifact" if model is ArtifactRegistry else "job_log"
    files = {f"d{n % 3}/{n}.bin": os.urandom(16 * 1024 + n) for n in range(40)}
    right = {"d0/12.bin": files["d0/12.bin"], "d2/20.bin": files["d2/20.bin"]}
    # On the primary's disk: 12 with one byte flipped, 20 cut short, both catalogued as
    # the right bytes.
    files["d0/12.bin"] = bytes([right["d0/12.bin"][0] ^ 1]) + right["d0/12.bin"][1:]
    files["d2/20.bin"] = right["d2/20.bin"][:-100]
    changes = _publish(primary, type_name, files, right)
    with write_transaction(runtime.engine) as conn:
        event_rows.note_changes(conn, model, changes)
    ids = [row.id for row in _rows(runtime, model).values()]

    sync_items(runtime, type_name, ids)

    mirror = runtime.settings.mirror_root / ("artifacts" if type_name == "artifact"
                                             else "job_logs")
    rows = _rows(runtime, model)
    for path, data in files.items():
        row = rows[path]
        if path in right:
            assert row.state == "failed", path
            assert "sha256" in row.last_error or "bytes" in row.last_error
            assert not (mirror / path).exists(), f"a bad copy of {path} is visible"
            continue
        assert row.state == "synced", (path, row.last_error)
        assert (mirror / path).read_bytes() == data
        # Verified as it arrived: the verifier's outcome, without a second fetch.
        assert row.verification_state == "succeeded", path
        assert row.verification_checksum == hashlib.sha256(data).hexdigest()
        stat = (mirror / path).stat()
        assert row.verified_fingerprint == f"{stat.st_size}:{stat.st_mtime_ns}"
    assert not [p for p in mirror.rglob("*") if p.name.startswith(TEMP_PREFIX)]

    # The primary's copies are repaired; the failed rows are retried and land.
    for path, data in right.items():
        (primary.storage(mirror.name) / path).write_bytes(data)
    with write_transaction(runtime.engine) as conn:
        sync_rows.retry_due(conn, model, utcnow() + timedelta(days=1))
    sync_items(runtime, type_name, [rows[path].id for path in right])
    rows = _rows(runtime, model)
    for path, data in right.items():
        assert rows[path].state == "synced"
        assert rows[path].verification_state == "succeeded"
        assert (mirror / path).read_bytes() == data


def test_a_blob_without_a_primary_checksum_syncs_but_waits_for_the_verifier(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Test primaries take checksums every 0.5 s; this one must not take it before the
    # batch is served, so it is restarted with its checksummer idle.
    primary.stop()
    monkeypatch.setenv("GEO_SYNC_PRIMARY__CHECKSUM_INTERVAL_SECONDS", "86400")
    primary.start()
    monkeypatch.delenv("GEO_SYNC_PRIMARY__CHECKSUM_INTERVAL_SECONDS")
    (primary.storage("artifacts") / "plain.bin").write_bytes(b"no checksum yet")
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", "plain.bin", size=15))
    with write_transaction(runtime.engine) as conn:
        event_rows.note_changes(conn, ArtifactRegistry,
                               [NetChange("plain.bin", "plain.bin", False, 15, None)])
    ids = [row.id for row in _rows(runtime, ArtifactRegistry).values()]
    sync_items(runtime, "artifact", ids)
    row = _rows(runtime, ArtifactRegistry)["plain.bin"]
    assert row.state == "synced"
    assert row.verification_state == "pending"


def test_a_worker_goes_on_with_pending_rows_no_message_named(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime,
) -> None:
    files = {f"{n}.bin": os.urandom(100) for n in range(30)}
    changes = _publish(primary, "artifact", files, {})
    with write_transaction(runtime.engine) as conn:
        event_rows.note_changes(conn, ArtifactRegistry, changes)
    first = min(row.id for row in _rows(runtime, ArtifactRegistry).values())
    sync_items(runtime, "artifact", [first])
    rows = _rows(runtime, ArtifactRegistry)
    assert all(row.state == "synced" for row in rows.values())
