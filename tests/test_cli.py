"""The `geo-sync` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.services import temporary_database
from tests.sites import GEO_SYNC, primary_site, wait_for_port


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [GEO_SYNC] + (["--config", str(config)] if config else [])
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("command", [[], ["primary"], ["primary", "init"], ["primary", "serve"],
                                     ["primary", "publish"], ["primary", "scan"], ["status"],
                                     ["primary", "install-hooks"], ["primary", "token"],
                                     ["primary", "add-secondary"], ["demo"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "Usage: geo-sync" in result.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_init_writes_a_config_that_every_command_can_use(tmp_path: Path, backend: str) -> None:
    def scenario(url: str | None) -> None:
        args = ["primary", "init", "--dir", str(tmp_path / "site")]
        result = run(*args, *(["--database-url", url] if url else []))
        assert result.returncode == 0, result.stderr
        config = tmp_path / "site" / "config.toml"
        assert run(*args).returncode == 1, "init overwrote an existing config"
        secret = run("primary", "add-secondary", "east", config=config).stdout.strip()
        assert len(secret) >= 40
        (tmp_path / "site/storage/artifacts/a.bin").write_bytes(b"hello")
        published = run("primary", "publish", "artifact", "created", "--path", "a.bin",
                        config=config)
        assert published.returncode == 0, published.stderr
        status = json.loads(run("status", "--json", config=config).stdout)
        assert status["catalog"]["artifact"] == 1
        assert status["secondaries"][0]["name"] == "east"
        assert status["secondaries"][0]["pending_events"] == 1

    if backend == "sqlite":
        scenario(None)
    else:
        with temporary_database() as url:
            scenario(url)


def test_errors_are_one_line_with_a_hint_and_exit_non_zero(tmp_path: Path) -> None:
    missing = run("drift", config=tmp_path / "nope.toml")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "hint:" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    # status's exit code is its verdict: no config is Unhealthy (Nagios CRITICAL).
    unhealthy = run("status", config=tmp_path / "nope.toml")
    assert unhealthy.returncode == 2
    assert "does not exist" in unhealthy.stderr and "hint:" in unhealthy.stderr
    assert len(unhealthy.stderr.strip().splitlines()) == 1
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bad = run("primary", "publish", "artifact", "created", "--path", "../x",
                  config=site.config)
        assert bad.returncode == 1
        assert "not a normalized relative path" in bad.stderr
        unknown = run("primary", "token", "ghost", config=site.config)
        assert unknown.returncode == 1 and "no secondary named 'ghost'" in unknown.stderr


def test_the_debug_token_works_with_the_running_api(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None) as site:
        token = run("primary", "token", "s1", "--ttl", "30", config=site.config).stdout.strip()
        response = httpx.get(f"{site.api}/status", headers={"Authorization": f"Bearer {token}"},
                             timeout=90)
        assert response.status_code == 200
        assert response.json()["role"] == "primary"


def test_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None) as site:
        site.stop()
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as log:
            site.process = subprocess.Popen(
                [GEO_SYNC, "--config", str(site.config), "primary", "serve"],
                stdout=log, stderr=subprocess.STDOUT,
                env={"GEO_SYNC_PRIMARY__LISTEN_PORT": site.url.rsplit(":", 1)[1],
                     "PATH": "/usr/bin:/bin"},
            )
            wait_for_port(int(site.url.rsplit(":", 1)[1]), site.process)
            forged = site.token().replace(".", ".x", 1)
            httpx.get(f"{site.api}/status", headers={"Authorization": f"Bearer {forged}"},
                      timeout=90)
            httpx.get(f"{site.api}/status", headers=site.headers(), timeout=90)
            site.stop()
        text = log_path.read_text()
        assert "request_refused" in text
        assert site.secret not in text
        assert forged not in text
