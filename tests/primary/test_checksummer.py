"""The primary takes checksums for items that lack one, re-takes old ones, and serves
them per item (re-taken on request)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary import checksummer
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from replicators.checksums import repository_checksum
from tests.deployment import wait_for
from tests.gitutil import make_repository
from tests.sites import PrimarySite


def _publish(site: PrimarySite, *changes: Change) -> None:
    with write_transaction(site.engine) as conn:
        for change in changes:
            publish(conn, change)


def _checksums(site: PrimarySite) -> dict[str, str | None]:
    with site.engine.connect() as conn:
        return dict(conn.execute(select(CatalogItem.path, CatalogItem.checksum)).all())


def test_items_without_a_checksum_get_one_and_old_ones_are_retaken(
    primary: PrimarySite, tmp_path: Path
) -> None:
    primary.stop()  # drive the passes by hand
    make_repository(primary.storage("repositories") / "r.git", tmp_path / "work")
    (primary.storage("artifacts") / "a.bin").write_bytes(b"artifact")
    _publish(primary, Change("repository", "created", "r.git"),
             Change("artifact", "created", "a.bin"))
    assert checksummer.run_once(primary.engine, primary.settings.storage_root, 3600) == 2
    assert _checksums(primary) == {
        "r.git": repository_checksum(primary.storage("repositories") / "r.git"),
        "a.bin": hashlib.sha256(b"artifact").hexdigest(),
    }
    assert checksummer.run_once(primary.engine, primary.settings.storage_root, 3600) == 0
    (primary.storage("artifacts") / "a.bin").write_bytes(b"changed behind our back")
    with write_transaction(primary.engine) as conn:
        conn.execute(update(CatalogItem).values(checksum_at=utcnow() - timedelta(hours=2)))
    assert checksummer.run_once(primary.engine, primary.settings.storage_root, 3600) == 2
    assert _checksums(primary)["a.bin"] == hashlib.sha256(b"changed behind our back").hexdigest()


def test_serve_takes_missing_checksums_by_itself(primary: PrimarySite) -> None:
    (primary.storage("job_logs") / "1.log").write_bytes(b"line\n")
    _publish(primary, Change("job_log", "created", "1.log"))
    wait_for(lambda: _checksums(primary)["1.log"] is not None, "serve to take the checksum")
    assert _checksums(primary)["1.log"] == hashlib.sha256(b"line\n").hexdigest()


def test_an_item_checksum_can_be_retaken_on_request(primary: PrimarySite) -> None:
    (primary.storage("artifacts") / "a.bin").write_bytes(b"v1")
    _publish(primary, Change("artifact", "created", "a.bin", size=2,
                             checksum=hashlib.sha256(b"v1").hexdigest()))
    (primary.storage("artifacts") / "a.bin").write_bytes(b"v2")  # no event: stale catalog
    with primary.client() as client:
        stale = client.get("/catalog/artifact/item", params={"path": "a.bin"},
                           headers=primary.headers()).json()
        fresh = client.get("/catalog/artifact/item", params={"path": "a.bin", "recompute": 1},
                           headers=primary.headers()).json()
        gone = client.get("/catalog/artifact/item", params={"path": "nope.bin"},
                          headers=primary.headers())
        hostile = client.get("/catalog/artifact/item", params={"path": "../x"},
                             headers=primary.headers())
    assert stale["checksum"] == hashlib.sha256(b"v1").hexdigest()
    assert fresh["checksum"] == hashlib.sha256(b"v2").hexdigest()
    assert gone.status_code == 404 and gone.json()["error"] == "missing_on_primary"
    assert hostile.status_code == 400


def test_an_item_says_whether_it_changed_after_a_cursor(primary: PrimarySite) -> None:
    (primary.storage("artifacts") / "a.bin").write_bytes(b"v1")
    _publish(primary, Change("artifact", "created", "a.bin"))
    with primary.client() as client:
        def item(**params: str) -> httpx.Response:
            return client.get("/catalog/artifact/item", params={"path": "a.bin", **params},
                              headers=primary.headers())

        before = client.get("/events/head", headers=primary.headers()).json()["cursor"]
        _publish(primary, Change("job_log", "created", "other.log"))  # another item
        (primary.storage("artifacts") / "a.bin").unlink()
        _publish(primary, Change("artifact", "deleted", "a.bin"))
        _publish(primary, Change("artifact", "created", "a.bin"))
        after = client.get("/events/head", headers=primary.headers()).json()["cursor"]
        assert item().json()["changed_after_cursor"] is None
        assert item(cursor=before).json()["changed_after_cursor"] is True
        assert item(cursor=after).json()["changed_after_cursor"] is False
        bad = item(cursor="not-a-cursor")
    assert bad.status_code == 400 and "cursor" in bad.text
