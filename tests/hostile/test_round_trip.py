"""Every path the rules allow reaches the mirror byte-exact and is served back
byte-exact: URL syntax (?, #, %), spaces and non-ASCII in a name are data, never
part of the URL's structure. And the secondary checks what it received against
its own record of the item, not only against what the response says of itself."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.client import url_path
from geo_sync.secondary.runtime import Runtime
from geo_sync.tracking.sync_rows import Claimed
from replicators.transfer import IntegrityError
from replicators.type_map import replicator_for
from tests.gitutil import make_repository, refs
from tests.hostile.replication import replicate
from tests.hostile.strategies import valid_paths
from tests.sites import PrimarySite

FIXTURE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
_serial = itertools.count()


def _publish_blob(primary: PrimarySite, type_name: str, path: str, content: bytes) -> None:
    storage = primary.storage(replicator_for(type_name).storage_dir) / path
    storage.parent.mkdir(parents=True, exist_ok=True)
    storage.write_bytes(content)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change(type_name, "created", path, size=len(content),
                             checksum=hashlib.sha256(content).hexdigest()))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(path=valid_paths, body=st.binary(max_size=3000),
       type_name=st.sampled_from(["artifact", "job_log"]))
def test_any_valid_blob_path_round_trips_byte_exact_to_the_mirror_and_back(
    primary: PrimarySite, runtime: Runtime, path: str, body: bytes, type_name: str
) -> None:
    # A fresh directory per example: "a" and "a/b" cannot both be files.
    path = f"n{next(_serial)}/{path}"
    content = path.encode() + b"\0" + body  # unique per path: a mix-up cannot pass
    _publish_blob(primary, type_name, path, content)
    states = replicate(runtime, type_name)
    assert states[path] == "synced", states
    mirror = runtime.settings.mirror_root / replicator_for(type_name).storage_dir / path
    assert mirror.read_bytes() == content
    with primary.client() as client:
        served = client.get(f"/blobs/{type_name}/{url_path(path)}", headers=primary.headers())
    assert served.status_code == 200
    assert served.content == content


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURE)
@given(path=valid_paths)
def test_any_valid_repository_path_round_trips_over_git(
    primary: PrimarySite, runtime: Runtime, tmp_path: Path, path: str
) -> None:
    serial = next(_serial)
    path = f"n{serial}/{path}.git"
    bare = primary.storage("repositories") / path
    make_repository(bare, tmp_path / f"work-{serial}", commits=1)
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("repository", "created", path))
    states = replicate(runtime, "repository")
    assert states[path] == "synced", states
    assert refs(runtime.settings.mirror_root / "repositories" / path) == refs(bare)


@pytest.mark.parametrize(("wanted", "decoy"), [("a?b", "a"), ("e%2ff", "e/f"),
                                               ("c#d", "c"), ("x%3Fy", "x?y")])
def test_a_name_with_url_syntax_is_never_fetched_as_its_look_alike(
    primary: PrimarySite, runtime: Runtime, wanted: str, decoy: str
) -> None:
    _publish_blob(primary, "artifact", decoy, b"the decoy's bytes")
    _publish_blob(primary, "artifact", wanted, b"the wanted bytes, longer")
    states = replicate(runtime, "artifact")
    assert states == {decoy: "synced", wanted: "synced"}
    mirror = runtime.settings.mirror_root / "artifacts"
    assert (mirror / wanted).read_bytes() == b"the wanted bytes, longer"
    assert (mirror / decoy).read_bytes() == b"the decoy's bytes"


def test_bytes_that_disagree_with_our_record_never_reach_the_mirror(
    primary: PrimarySite, runtime: Runtime
) -> None:
    _publish_blob(primary, "artifact", "swapped.bin", b"0123456789")
    # Replaced on the primary behind the catalog's back: the response describes itself
    # consistently (its own size header), but not the item the event announced.
    (primary.storage("artifacts") / "swapped.bin").write_bytes(b"something else entirely")
    states = replicate(runtime, "artifact")
    assert states["swapped.bin"] != "synced"
    assert not (runtime.settings.mirror_root / "artifacts" / "swapped.bin").exists()


def test_a_path_now_held_by_another_record_is_not_mirrored_as_ours(
    primary: PrimarySite, runtime: Runtime
) -> None:
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "created", "moved.bin", record_id="old", size=3))
    replicate(runtime, "artifact")  # fails: nothing on disk yet; stays pending for retry
    (primary.storage("artifacts") / "moved.bin").write_bytes(b"new")
    with write_transaction(primary.engine) as conn:
        publish(conn, Change("artifact", "deleted", "moved.bin", record_id="old"))
        publish(conn, Change("artifact", "created", "moved.bin", record_id="new", size=3))
    # A worker still holding the old record's row asks for the path: the primary says
    # whose bytes these are.
    stale = Claimed(id=0, record_id="old", path="moved.bin", mirror_path=None, generation=1,
                    tombstone=False, expected_size=3, expected_checksum=None)
    with pytest.raises(IntegrityError, match="record 'new'"):
        replicator_for("artifact").sync(runtime.sync_context, stale)
    assert not (runtime.settings.mirror_root / "artifacts" / "moved.bin").exists()
