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


#: Every way a runner clones: full, shallow, partial, and both wire protocols.
CLONES = {"full": [], "shallow": ["--depth", "1"], "partial": ["--filter=blob:none"],
          "v2": ["-c", "protocol.version=2"], "v0": ["-c", "protocol.version=0"]}


def test_a_synced_repository_is_cloned_from_the_mirror_every_way_git_clones(
    server: MirrorServer, primary: PrimarySite, tmp_path: Path
) -> None:
    # One server for the five ways (a server per way cost the suite eight more
    # primary, secondary and mirror-server start-ups).
    assert _served_by(server) == "mirror"
    upstream = git("rev-parse", "main", cwd=primary.storage("repositories") / REPO).stdout
    for way, how in CLONES.items():
        config = [a for a in how if a.startswith("protocol") or a == "-c"]
        options = [a for a in how if a not in config]
        clone = tmp_path / f"clone-{way}"
        server.git(*config, "clone", "-q", *options, server.git_url(REPO), str(clone))
        assert git("rev-parse", "HEAD", cwd=clone).stdout == upstream, way
        assert (clone / "file4.txt").read_text() == "content 4\n", way
        server.git(*config, "fetch", "-q", "origin", cwd=clone)
    assert _served_by(server) == "mirror"


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
