"""Who may read from `geo-sync secondary serve`: reader tokens as Bearer or as the
HTTP Basic password git sends, 401 with WWW-Authenticate otherwise, anonymous reads
only when allowed, and the readers commands."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.secondary.runtime import Runtime
from tests.deployment import wait_for
from tests.gitutil import make_repository
from tests.secondary.mirror.world import MirrorServer, mirror_server, publish, replicate
from tests.sites import PrimarySite, SecondarySite

REPO = "r.git"


@pytest.fixture
def server(primary: PrimarySite, secondary: SecondarySite, runtime: Runtime,
           tmp_path: Path) -> Iterator[MirrorServer]:
    publish(primary, "artifact", "created", "a.zip", b"artifact")
    make_repository(primary.storage("repositories") / REPO, tmp_path / "work")
    publish(primary, "repository", "created", REPO)
    replicate(runtime, "artifact")
    replicate(runtime, "repository")
    with mirror_server(secondary) as running:
        yield running


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BAD = [None, "Bearer gsr_not-a-token", "Bearer ", "Basic !!!", "Token abc",
       _basic("runner", "gsr_wrong"), _basic("runner", "")]


def test_a_missing_or_bad_token_is_refused_alike(server: MirrorServer) -> None:
    for authorization in BAD:
        args = ["-H", f"Authorization: {authorization}"] if authorization else []
        headers, body, status = server.curl("/artifacts/a.zip", *args, token="")
        assert status == 401, authorization
        assert headers["www-authenticate"].startswith("Basic realm=")
        assert b"artifact" not in body
        assert b"runner" not in body


def test_a_token_is_accepted_as_bearer_and_as_basic_password(server: MirrorServer) -> None:
    _, body, status = server.curl("/artifacts/a.zip")
    assert (status, body) == (200, b"artifact")
    _, body, status = server.curl("/artifacts/a.zip", "-u", f"anyone:{server.token}",
                                  token="")
    assert (status, body) == (200, b"artifact")


def test_git_without_a_token_is_asked_for_credentials_and_with_one_clones(
    server: MirrorServer, tmp_path: Path
) -> None:
    refused = server.git("clone", server.git_url(REPO), str(tmp_path / "no"), token="",
                         check=False)
    assert refused.returncode != 0
    assert "Authentication failed" in refused.stderr or "terminal prompts" in refused.stderr
    with_password = f"http://runner:{server.token}@127.0.0.1:{server.port}/git/{REPO}"
    server.git("clone", "-q", with_password, str(tmp_path / "yes"), token="")
    assert (tmp_path / "yes" / "file0.txt").exists()


def test_a_removed_reader_is_refused_and_names_are_listed_without_tokens(
    server: MirrorServer, secondary: SecondarySite
) -> None:
    listed = secondary.cli("secondary", "readers").stdout
    assert f"runner{server.port}" in listed
    assert server.token not in listed
    secondary.cli("secondary", "remove-reader", f"runner{server.port}")
    # A token found valid is trusted for up to access.CACHE_SECONDS.
    wait_for(lambda: server.curl("/artifacts/a.zip")[2] == 401, "the token to be refused",
             timeout=60)
    again = secondary.cli("secondary", "remove-reader", f"runner{server.port}", check=False)
    assert again.returncode != 0
    assert "no reader named" in again.stderr


def test_anonymous_reads_only_when_allowed(
    primary: PrimarySite, secondary: SecondarySite, runtime: Runtime
) -> None:
    publish(primary, "artifact", "created", "open.zip", b"open")
    replicate(runtime, "artifact")
    with mirror_server(secondary, GEO_SYNC_SECONDARY__MIRROR__ALLOW_ANONYMOUS="true") as open_:
        _, body, status = open_.curl("/artifacts/open.zip", token="")
        assert (status, body) == (200, b"open")
        _, _, status = open_.curl("/artifacts/open.zip", token="gsr_wrong")
        assert status == 401


def test_the_health_check_needs_no_token(server: MirrorServer) -> None:
    _, body, status = server.curl("/-/health", token="")
    assert status == 200
    assert b'"status":"ok"' in body
