"""Git smart HTTP over the Geo API: real `git clone`, pygit2 fetch, pushes refused."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from tests.gitutil import git, make_repository, refs
from tests.sites import PrimarySite


class _Auth(pygit2.RemoteCallbacks):  # type: ignore[misc]
    def __init__(self, header: str) -> None:
        super().__init__()
        self._header = header

    def custom_headers(self) -> list[str]:  # libgit2 ignores http.extraHeader
        return [self._header]


def _auth_header(site: PrimarySite) -> str:
    return f"Authorization: Bearer {site.token()}"


@pytest.fixture
def repo(primary: PrimarySite, tmp_path: Path) -> Path:
    bare = primary.storage("repositories") / "group" / "project.git"
    make_repository(bare, tmp_path / "work")
    return bare


def test_plain_git_clone_over_the_geo_api_gets_every_ref(
    primary: PrimarySite, repo: Path, tmp_path: Path
) -> None:
    target = tmp_path / "clone.git"
    git("-c", f"http.extraHeader={_auth_header(primary)}", "clone", "-q", "--mirror",
        f"{primary.api}/git/group/project.git", str(target))
    assert refs(target) == refs(repo)
    assert git("fsck", "--strict", cwd=target).returncode == 0


def test_pygit2_fetch_with_custom_headers_mirrors_the_repository(
    primary: PrimarySite, repo: Path, tmp_path: Path
) -> None:
    mirror = pygit2.init_repository(str(tmp_path / "mirror.git"), bare=True)
    remote = mirror.remotes.create("primary", f"{primary.api}/git/group/project.git",
                                   "+refs/*:refs/*")
    remote.fetch(callbacks=_Auth(_auth_header(primary)))
    assert refs(tmp_path / "mirror.git") == refs(repo)


def test_cloning_without_a_token_fails(primary: PrimarySite, repo: Path, tmp_path: Path) -> None:
    result = git("clone", "-q", f"{primary.api}/git/group/project.git",
                 str(tmp_path / "nope"), check=False)
    assert result.returncode != 0
    assert not (tmp_path / "nope" / "HEAD").exists()


def test_pushing_through_the_geo_api_is_refused(
    primary: PrimarySite, repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "new.txt").write_text("x")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "should not arrive", cwd=work)
    before = refs(repo)
    result = git("-c", f"http.extraHeader={_auth_header(primary)}", "push",
                 f"{primary.api}/git/group/project.git", "main", cwd=work, check=False)
    assert result.returncode != 0
    assert refs(repo) == before
    with primary.client() as client:
        advert = client.get("/git/group/project.git/info/refs",
                            params={"service": "git-receive-pack"}, headers=primary.headers())
    assert advert.status_code == 403
    assert "push to the primary's own git server" in advert.json()["hint"]


def test_a_repository_that_does_not_exist_is_missing_on_primary(primary: PrimarySite) -> None:
    with primary.client() as client:
        response = client.get("/git/nope.git/info/refs", params={"service": "git-upload-pack"},
                              headers=primary.headers())
        traversal = client.get("/git/../../etc.git/info/refs",
                               params={"service": "git-upload-pack"}, headers=primary.headers())
    assert response.status_code == 404
    assert response.json()["error"] == "missing_on_primary"
    assert traversal.status_code in (400, 404)
