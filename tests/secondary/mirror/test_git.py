"""Real git against `geo-sync secondary serve`: clones and fetches of synced copies
come from the mirror, a push not yet synced comes through the primary, pushes are
refused naming the primary. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.secondary.runtime import Runtime
from tests.gitutil import git, make_repository
from tests.secondary.mirror.world import MirrorServer, mirror_server, publish, replicate
from tests.sites import PrimarySite, SecondarySite

REPO = "group/project.git"


@pytest.fixture
def server(primary: PrimarySite, secondary: SecondarySite, runtime: Runtime,
           tmp_path: Path) -> Iterator[MirrorServer]:
    make_repository(primary.storage("repositories") / REPO, tmp_path / "work", commits=5)
    publish(primary, "repository", "created", REPO)
    replicate(runtime, "repository")
    with mirror_server(secondary) as running:
        yield running


def _served_by(server: MirrorServer, repo: str = REPO) -> str:
    headers, _, status = server.curl(f"/git/{repo}/info/refs?service=git-upload-pack")
    assert status == 200
    return headers["x-geo-served-by"]


@pytest.mark.parametrize("how", [[], ["--depth", "1"], ["--filter=blob:none"],
                                 ["-c", "protocol.version=2"], ["-c", "protocol.version=0"]],
                         ids=["full", "shallow", "partial", "v2", "v0"])
def test_a_synced_repository_is_cloned_from_the_mirror(
    server: MirrorServer, primary: PrimarySite, tmp_path: Path, how: list[str]
) -> None:
    assert _served_by(server) == "mirror"
    config = [a for a in how if a.startswith("protocol") or a == "-c"]
    options = [a for a in how if a not in config]
    clone = tmp_path / "clone"
    server.git(*config, "clone", "-q", *options, server.git_url(REPO), str(clone))
    upstream = git("rev-parse", "main", cwd=primary.storage("repositories") / REPO).stdout
    assert git("rev-parse", "HEAD", cwd=clone).stdout == upstream
    assert (clone / "file4.txt").read_text() == "content 4\n"
    server.git("fetch", "-q", "origin", cwd=clone)


def test_a_push_not_yet_synced_is_fetched_through_the_primary(
    server: MirrorServer, primary: PrimarySite, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    server.git("clone", "-q", server.git_url(REPO), str(clone))
    work = tmp_path / "work"
    (work / "new.txt").write_text("pushed a moment ago\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "new commit", cwd=work)
    git("push", "-q", "bare", "main", cwd=work)
    publish(primary, "repository", "updated", REPO)  # what the post-receive hook does
    new = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert _served_by(server) == "primary"
    server.git("fetch", "-q", "origin", cwd=clone)
    assert git("rev-parse", "origin/main", cwd=clone).stdout.strip() == new
    fresh = tmp_path / "fresh"
    server.git("clone", "-q", "--depth", "1", server.git_url(REPO), str(fresh))
    assert (fresh / "new.txt").read_text() == "pushed a moment ago\n"


def test_a_push_is_refused_naming_the_primary(
    server: MirrorServer, primary: PrimarySite, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    server.git("clone", "-q", server.git_url(REPO), str(clone))
    (clone / "x.txt").write_text("x\n")
    git("add", ".", cwd=clone)
    git("commit", "-q", "-m", "x", cwd=clone)
    pushed = server.git("push", "origin", "HEAD:main", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert "read-only mirror" in pushed.stderr
    assert f"{primary.url}/{REPO}" in pushed.stderr
