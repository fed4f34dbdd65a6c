"""One conformance suite, run over every registered replicator."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_sync.errors import MissingOnPrimary, UnsafePath
from geo_sync.paths import TEMP_PREFIX
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import SyncContext
from replicators.type_map import REPLICATORS
from tests.replicators.drivers import DRIVERS, Driver
from tests.sites import PrimarySite


def _item(path: str, generation: int = 1, *, mirror_path: str | None = None,
          tombstone: bool = False) -> Claimed:
    return Claimed(id=1, record_id=path, path=path, mirror_path=mirror_path,
                   generation=generation, tombstone=tombstone, expected_size=None,
                   expected_checksum=None)


def _no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


@pytest.fixture(params=sorted(REPLICATORS))
def driver(request: pytest.FixtureRequest, served: PrimarySite, tmp_path: Path) -> Driver:
    return DRIVERS[request.param](served, tmp_path)


def _path(driver: Driver) -> str:
    return "group/thing.git" if driver.replicator.name == "repository" else "group/thing.dat"


def test_every_replicator_has_a_conformance_driver() -> None:
    assert set(DRIVERS) == set(REPLICATORS)


def test_a_new_item_syncs_to_an_identical_copy(driver: Driver, ctx: SyncContext) -> None:
    path = _path(driver)
    driver.create(path)
    driver.replicator.sync(ctx, _item(path))
    mirror = ctx.root(driver.replicator) / path
    assert driver.same(driver.root / path, mirror)
    assert _no_temp_files(ctx.mirror_root)


def test_a_changed_item_syncs_again_to_an_identical_copy(driver: Driver,
                                                        ctx: SyncContext) -> None:
    path = _path(driver)
    driver.create(path)
    driver.replicator.sync(ctx, _item(path))
    driver.change(path)
    assert not driver.same(driver.root / path, ctx.root(driver.replicator) / path)
    driver.replicator.sync(ctx, _item(path, 2, mirror_path=path))
    assert driver.same(driver.root / path, ctx.root(driver.replicator) / path)


def test_remove_deletes_the_mirror_copy(driver: Driver, ctx: SyncContext) -> None:
    path = _path(driver)
    driver.create(path)
    driver.replicator.sync(ctx, _item(path))
    driver.replicator.remove(ctx, _item(path, 2, mirror_path=path, tombstone=True))
    assert not (ctx.root(driver.replicator) / path).exists()
    assert _no_temp_files(ctx.mirror_root)


def test_an_item_missing_on_the_primary_fails_as_such_and_writes_nothing(
    driver: Driver, ctx: SyncContext
) -> None:
    path = _path(driver)
    with pytest.raises(MissingOnPrimary):
        driver.replicator.sync(ctx, _item(path))
    assert not (ctx.root(driver.replicator) / path).exists()
    assert _no_temp_files(ctx.mirror_root)


def test_hostile_paths_are_refused_before_touching_the_disk(driver: Driver,
                                                            ctx: SyncContext) -> None:
    for hostile in ("../../escape.git", "/etc/passwd.git"):
        with pytest.raises(UnsafePath, match=r"normalized|absolute"):
            driver.replicator.sync(ctx, _item(hostile))
    assert not (ctx.mirror_root.parent / "escape.git").exists()
