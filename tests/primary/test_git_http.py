"""Git smart HTTP over the Geo API: real `git clone` (v0 and v2, gzipped negotiations),
pygit2 fetch, pushes refused, hostile requests answered with a 4xx."""

from __future__ import annotations

import gzip
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.git_http_backend import REQUEST_TYPE, pkt_line
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


@pytest.fixture
def many_refs(primary: PrimarySite, tmp_path: Path) -> Path:
    """A repository with 40 branches on 40 commits: a clone's wants pass 1 KiB, so git's
    client gzips its negotiation."""
    bare = primary.storage("repositories") / "group" / "many.git"
    work = tmp_path / "many-work"
    make_repository(bare, work, commits=40)
    for n in range(40):
        git("branch", f"b{n}", f"HEAD~{n}", cwd=work)
    git("push", "-q", "bare", "refs/heads/*:refs/heads/*", cwd=work)
    return bare


@pytest.mark.parametrize("version", ["0", "2"])
def test_a_clone_with_many_wants_gets_every_ref_in_protocol_v0_and_v2(
    primary: PrimarySite, many_refs: Path, tmp_path: Path, version: str
) -> None:
    target = tmp_path / "clone.git"
    git("-c", f"http.extraHeader={_auth_header(primary)}", "-c",
        f"protocol.version={version}", "clone", "-q", "--mirror",
        f"{primary.api}/git/group/many.git", str(target))
    assert refs(target) == refs(many_refs)
    assert len(refs(target)) > 40
    assert git("fsck", "--strict", cwd=target).returncode == 0


def _negotiation(wants: list[str]) -> bytes:
    """A protocol v0 upload-pack request for ``wants``, as git's client writes it."""
    lines = [f"want {wants[0]} ofs-delta\n", *(f"want {oid}\n" for oid in wants[1:])]
    body = b"".join(pkt_line(line) for line in lines)
    return body + b"0000" + pkt_line("done\n")


def test_a_gzipped_negotiation_is_inflated_and_answered_with_a_pack(
    primary: PrimarySite, many_refs: Path
) -> None:
    wants = sorted(set(refs(many_refs).values()))
    with primary.client() as client:
        response = client.post(
            "/git/group/many.git/git-upload-pack", content=gzip.compress(_negotiation(wants)),
            headers={**primary.headers(), "Content-Type": REQUEST_TYPE,
                     "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert b"PACK" in response.content


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), encoding=st.sampled_from(["", "gzip"]),
       content_type=st.sampled_from([REQUEST_TYPE, "text/plain"]))
def test_a_hostile_upload_pack_request_gets_a_clear_4xx_and_the_server_goes_on(
    primary: PrimarySite, repo: Path, body: bytes, encoding: str, content_type: str
) -> None:
    headers = {**primary.headers(), "Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    with primary.client() as client:
        response = client.post("/git/group/project.git/git-upload-pack", content=body,
                               headers=headers)
        advert = client.get("/git/group/project.git/info/refs",
                            params={"service": "git-upload-pack"}, headers=primary.headers())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["message"]
    if content_type != REQUEST_TYPE:
        assert response.status_code == 400
        assert REQUEST_TYPE in response.json()["message"]
    assert advert.status_code == 200
    assert advert.content.startswith(pkt_line("# service=git-upload-pack\n") + b"0000")
