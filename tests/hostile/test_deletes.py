"""A delete removes exactly one item's copy, on the primary's catalog and on every
mirror; a secondary never removes a directory that holds other items, even when a
hostile event tells it to."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.models import Event
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.runtime import Runtime
from geo_sync.tracking.models import CursorRow
from replicators.type_map import replicator_for
from tests.gitutil import make_repository
from tests.hostile.replication import replicate
from tests.sites import PrimarySite


def _blob(primary: PrimarySite, path: str, content: bytes) -> None:
    full = primary.storage("artifacts") / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(content)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", path, size=len(content),
                             checksum=hashlib.sha256(content).hexdigest()))


def _raw_event(primary: PrimarySite, type_name: str, event: str, path: str) -> None:
    """Write an event the way a buggy or hostile primary would: past every check."""
    with write_transaction(primary.engine) as conn:
        values = {"replicable_type": type_name, "event": event, "record_id": path,
                  "path": path, "payload": {}, "created_at": utcnow()}
        if primary.settings.database_url.startswith("postgresql"):
            values["txid"] = conn.exec_driver_sql(
                "SELECT pg_current_xact_id()::text::bigint").scalar_one()
        conn.execute(insert(Event).values(values))


def test_a_delete_removes_exactly_the_named_item_and_its_neighbours_stay(
    primary: PrimarySite, runtime: Runtime
) -> None:
    for name in ("dir/a.bin", "dir/b.bin", "dir/sub/c.bin"):
        _blob(primary, name, name.encode())
    replicate(runtime, "artifact")
    (primary.storage("artifacts") / "dir/a.bin").unlink()
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "deleted", "dir/a.bin"))
    replicate(runtime, "artifact")
    mirror = runtime.settings.mirror_root / "artifacts"
    assert not (mirror / "dir/a.bin").exists()
    assert (mirror / "dir/b.bin").read_bytes() == b"dir/b.bin"
    assert (mirror / "dir/sub/c.bin").read_bytes() == b"dir/sub/c.bin"


@pytest.mark.parametrize("target", ["dir", "dir/sub"])
def test_a_hostile_delete_of_a_directory_leaves_every_item_in_it(
    primary: PrimarySite, runtime: Runtime, target: str
) -> None:
    for name in ("dir/a.bin", "dir/sub/c.bin"):
        _blob(primary, name, name.encode())
    replicate(runtime, "artifact")
    _raw_event(primary, "artifact", "deleted", target)
    replicate(runtime, "artifact")
    mirror = runtime.settings.mirror_root / "artifacts"
    assert (mirror / "dir/a.bin").read_bytes() == b"dir/a.bin"
    assert (mirror / "dir/sub/c.bin").read_bytes() == b"dir/sub/c.bin"


def test_a_hostile_repository_delete_never_removes_a_directory_of_repositories(
    primary: PrimarySite, runtime: Runtime, tmp_path: Path
) -> None:
    for path in ("group.git/inner.git", "other/project.git"):
        make_repository(primary.storage("repositories") / path,
                        tmp_path / path.replace("/", "_"), commits=1)
        with write_transaction(primary.engine) as conn:
            publish(conn, Change("repository", "created", path))
    replicate(runtime, "repository")
    mirror = runtime.settings.mirror_root / "repositories"
    assert (mirror / "group.git/inner.git/HEAD").is_file()
    # "group.git" is a plain directory holding a repository; "other.git" does not exist.
    _raw_event(primary, "repository", "deleted", "group.git")
    replicate(runtime, "repository")
    assert (mirror / "group.git/inner.git/HEAD").is_file()
    assert (mirror / "other/project.git/HEAD").is_file()


def test_the_cli_refuses_to_publish_a_delete_of_an_uncatalogued_path(
    primary: PrimarySite,
) -> None:
    _blob(primary, "kept/a.bin", b"x")
    result = primary.cli("primary", "publish", "artifact", "deleted", "--path", "kept",
                         check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "kept" in result.stderr and "catalog" in result.stderr


def _raw_payload_event(primary: PrimarySite, path: str, payload: dict[str, object]) -> None:
    with write_transaction(primary.engine) as conn:
        values = {"replicable_type": "artifact", "event": "created", "record_id": path,
                  "path": path, "payload": payload, "created_at": utcnow()}
        if primary.settings.database_url.startswith("postgresql"):
            values["txid"] = conn.exec_driver_sql(
                "SELECT pg_current_xact_id()::text::bigint").scalar_one()
        conn.execute(insert(Event).values(values))


@pytest.mark.parametrize("payload", [{"size": 2**64}, {"size": -1}, {"size": True},
                                     {"size": "12"}, {"checksum": "a" * 64 + "\n"},
                                     {"checksum": 5}])
def test_an_event_with_a_hostile_payload_is_refused_and_the_feed_moves_on(
    primary: PrimarySite, runtime: Runtime, payload: dict[str, object]
) -> None:
    _raw_payload_event(primary, "hostile.bin", payload)
    _blob(primary, "fine.bin", b"fine")
    replicate(runtime, "artifact")
    model = replicator_for("artifact").registry_table
    with runtime.engine.connect() as conn:
        rows = dict(conn.execute(select(model.record_id, model.state)).all())
        error = conn.execute(select(CursorRow.last_error)).scalar_one()
    assert rows == {"fine.bin": "synced"}
    assert "payload" in error
