"""A primary served over HTTPS with a certificate of a throwaway CA: a secondary that
trusts the CA (primary_ca_bundle) replicates everything, git included (libgit2's own
TLS); one that does not is refused with an error that names the TLS problem and the
setting that fixes it, in `check`, `status`, `secondary init` and the replicators."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from geo_sync.errors import TransientError
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.runtime import open_runtime
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.sync_rows import Claimed
from geo_sync.workload import Workload
from replicators.repository import RepositoryReplicator
from tests.deployment import Deployment, deployment_for
from tests.sites import GEO_SYNC, PrimarySite, primary_site, secondary_site
from tests.steps import publish_artifact
from tests.tls import TestCA, make_ca


@pytest.fixture(params=["production", "embedded"])
def tls_deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """PostgreSQL + Redis + worker processes, and SQLite + embedded: both over HTTPS."""
    with deployment_for(request.param, tmp_path, tls=make_ca(tmp_path / "ca")) as built:
        yield built


def test_a_secondary_trusting_the_ca_replicates_everything_over_https(
        tls_deployment: Deployment, tmp_path: Path) -> None:
    assert tls_deployment.primary.url.startswith("https://")
    workload = tls_deployment.workload(tmp_path / "scratch")
    workload.initial(repositories=2, artifacts=4, logs=2)
    tls_deployment.start()
    tls_deployment.wait_converged()
    workload.round(1)  # pushes, a force push, renames, deletes, live logs
    tls_deployment.wait_converged()
    status = tls_deployment.status()
    assert status["primary"]["reachable"]
    assert all(c["synced"] == c["total"] and c["failed"] == 0
               for c in status["types"].values())
    assert {"repository", "artifact", "job_log"} <= {
        name for name, counts in status["types"].items() if counts["total"]}
    check = tls_deployment.secondary.cli("check", check=False)
    assert "(TLS)" in check.stdout, check.stdout


@pytest.fixture
def https_primary(tmp_path: Path) -> Iterator[PrimarySite]:
    with primary_site(tmp_path / "primary", None, tls=make_ca(tmp_path / "ca")) as site:
        yield site


def _settings(primary: PrimarySite, tmp_path: Path, **tls: object) -> SecondarySettings:
    return SecondarySettings(name=primary.secondary, secret=primary.secret,
                             primary_url=primary.url, mirror_root=tmp_path / "mirror",
                             database_url=f"sqlite:///{tmp_path / 'unused.db'}",
                             **tls)  # type: ignore[arg-type]


@pytest.mark.parametrize("trust", ["public CAs", "another CA"])
def test_a_secondary_not_trusting_the_primary_is_refused_naming_the_setting(
        https_primary: PrimarySite, tmp_path: Path, trust: str) -> None:
    bundle = None if trust == "public CAs" else make_ca(tmp_path / "other", "other CA").ca_cert
    client = PrimaryClient(_settings(https_primary, tmp_path, primary_ca_bundle=bundle))
    try:
        with pytest.raises(TransientError) as api:
            client.status()
        assert "TLS certificate is not trusted" in api.value.message
        assert "primary_ca_bundle" in api.value.hint
        with pytest.raises(TransientError) as blob, client.blob("artifact", "a/b.bin"):
            pass
        assert "TLS certificate is not trusted" in blob.value.message
    finally:
        client.close()


def test_git_fetches_over_https_are_refused_without_the_ca_and_work_with_it(
        https_primary: PrimarySite, tmp_path: Path) -> None:
    workload = Workload(https_primary.settings.storage_root, tmp_path / "scratch",
                        lambda change: None)
    workload.create_repository("group/project.git", 2)
    blocked = secondary_site(tmp_path / "blocked", https_primary, None,
                             primary_ca_bundle=str(make_ca(tmp_path / "x", "x").ca_cert))
    trusted = secondary_site(tmp_path / "trusted", https_primary, None)
    for site, expect_trusted in ((blocked, False), (trusted, True)):
        runtime = open_runtime(site.settings)
        try:
            claimed = _claim("group/project.git")
            if expect_trusted:
                RepositoryReplicator.sync(runtime.sync_context, claimed)
                assert (site.mirror("repositories") / "group/project.git" / "HEAD").is_file()
            else:
                with pytest.raises(TransientError) as caught:
                    RepositoryReplicator.sync(runtime.sync_context, claimed)
                assert "TLS" in caught.value.message, caught.value.message
                assert "primary_ca_bundle" in caught.value.hint
        finally:
            runtime.close()
            site.engine.dispose()


def _claim(path: str) -> Claimed:
    return Claimed(id=1, record_id="1", path=path, mirror_path=None, generation=1,
                   tombstone=False, expected_size=None, expected_checksum=None, fresh=True)


def test_check_status_and_init_name_an_untrusted_certificate_in_one_line(
        https_primary: PrimarySite, tmp_path: Path) -> None:
    publish_artifact(https_primary, "a/one.bin", b"x" * 10)
    site = secondary_site(tmp_path / "secondary", https_primary, None,
                          primary_ca_bundle=str(make_ca(tmp_path / "x", "x").ca_cert))
    check = site.cli("check", check=False)
    line = next(x for x in check.stdout.splitlines() if "primary reachable" in x)
    assert line.startswith("CRITICAL") and "not trusted" in line, check.stdout
    assert "primary_ca_bundle" in check.stdout
    status = site.cli("status", "--json", check=False)
    report = json.loads(status.stdout)
    assert not report["primary"]["reachable"]
    assert "not trusted" in json.dumps(report["primary"])
    site.engine.dispose()
    init = subprocess.run(
        [GEO_SYNC, "secondary", "init", "--dir", str(tmp_path / "new"), "--primary-url",
         https_primary.url, "--name", https_primary.secondary, "--secret",
         https_primary.secret], capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode != 0
    assert "not trusted" in init.stderr and "primary_ca_bundle" in init.stderr, init.stderr
    assert not (tmp_path / "new").exists()
    trusted = subprocess.run(
        [GEO_SYNC, "secondary", "init", "--dir", str(tmp_path / "new"), "--primary-url",
         https_primary.url, "--name", https_primary.secondary, "--secret",
         https_primary.secret, "--primary-ca-bundle", str(_ca(https_primary).ca_cert)],
        capture_output=True, text=True, timeout=120, check=False)
    assert trusted.returncode == 0, trusted.stderr
    assert "primary_ca_bundle" in (tmp_path / "new" / "config.toml").read_text()


def _ca(primary: PrimarySite) -> TestCA:
    assert primary.tls is not None
    return primary.tls


def test_plain_http_to_an_https_primary_says_to_use_https(
        https_primary: PrimarySite, tmp_path: Path) -> None:
    client = PrimaryClient(SecondarySettings(
        name=https_primary.secondary, secret=https_primary.secret,
        primary_url=https_primary.url.replace("https://", "http://"),
        mirror_root=tmp_path / "mirror", database_url="sqlite:///unused.db"))
    try:
        with pytest.raises(TransientError) as caught:
            client.status()
        assert "https://" in caught.value.hint, caught.value
    finally:
        client.close()
