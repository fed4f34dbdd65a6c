"""Repositories: renames move the mirror, HEAD follows the primary's default branch."""

from __future__ import annotations

from pathlib import Path

from replicators.base import SyncContext
from replicators.repository import RepositoryReplicator
from tests.gitutil import git, refs
from tests.replicators.drivers import RepositoryDriver
from tests.replicators.test_conformance import _item
from tests.sites import PrimarySite


def test_a_renamed_repository_is_moved_then_fetched(served: PrimarySite, ctx: SyncContext,
                                                    tmp_path: Path) -> None:
    driver = RepositoryDriver(served, tmp_path)
    driver.create("old/name.git")
    RepositoryReplicator.sync(ctx, _item("old/name.git"))
    (driver.root / "new").mkdir()
    (driver.root / "old/name.git").rename(driver.root / "new/name.git")
    driver.publish("renamed", "new/name.git", old_path="old/name.git")
    moved = _item("new/name.git", 2, mirror_path="old/name.git")
    RepositoryReplicator.sync(ctx, moved)
    mirror = ctx.root(RepositoryReplicator)
    assert not (mirror / "old/name.git").exists()
    assert refs(mirror / "new/name.git") == refs(driver.root / "new/name.git")


def test_head_follows_the_primarys_default_branch(served: PrimarySite, ctx: SyncContext,
                                                  tmp_path: Path) -> None:
    driver = RepositoryDriver(served, tmp_path)
    driver.create("r.git")
    RepositoryReplicator.sync(ctx, _item("r.git"))
    git("symbolic-ref", "HEAD", "refs/heads/feature", cwd=driver.root / "r.git")
    RepositoryReplicator.sync(ctx, _item("r.git", 2, mirror_path="r.git"))
    head = git("symbolic-ref", "HEAD", cwd=ctx.root(RepositoryReplicator) / "r.git")
    assert head.stdout.strip() == "refs/heads/feature"


def test_a_mirror_clone_over_plain_git_sees_what_the_primary_has(
    served: PrimarySite, ctx: SyncContext, tmp_path: Path
) -> None:
    driver = RepositoryDriver(served, tmp_path)
    driver.create("r.git")
    RepositoryReplicator.sync(ctx, _item("r.git"))
    mirror = ctx.root(RepositoryReplicator) / "r.git"
    assert git("fsck", "--strict", cwd=mirror).returncode == 0
    assert git("log", "--oneline", "main", cwd=mirror).stdout == git(
        "log", "--oneline", "main", cwd=driver.root / "r.git").stdout
