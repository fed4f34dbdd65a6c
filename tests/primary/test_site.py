"""`geo-sync primary init`: nothing is written until the database is known to work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.services import PG_ADMIN_DSN, PG_HOSTPORT, temporary_database
from tests.sites import GEO_SYNC, free_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def _files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


def test_init_against_a_missing_database_writes_nothing_and_says_create_it(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    with temporary_database() as url:
        # A database name that is free: the one made above with a suffix nobody created.
        missing = url + "_absent"
        result = run("primary", "init", "--dir", str(site), "--database-url", missing)
        assert result.returncode == 1
        assert "does not exist" in result.stderr and "create the database" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert _files_under(site) == []
        name = missing.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            again = run("primary", "init", "--dir", str(site), "--database-url", missing)
            assert again.returncode == 0, again.stderr
            assert (site / "config.toml").exists()
        finally:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_init_against_a_server_that_is_down_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    down = f"postgresql+psycopg://postgres:hunter2-password@127.0.0.1:{free_port()}/geo"
    result = run("primary", "init", "--dir", str(site), "--database-url", down)
    assert result.returncode == 1
    assert "database server is running" in result.stderr
    assert "hunter2-password" not in result.stderr
    assert not site.exists()


def test_init_against_an_unopenable_sqlite_file_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'primary.db'}"
    result = run("primary", "init", "--dir", str(site), "--database-url", url)
    assert result.returncode == 1
    assert "unable to open database file" in result.stderr
    assert "nothing was written" in result.stderr
    assert not site.exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_init_with_a_bad_listen_port_writes_nothing(tmp_path: Path, backend: str) -> None:
    site = tmp_path / "site"
    database = ["--database-url", f"postgresql+psycopg://{PG_HOSTPORT}/postgres"] \
        if backend == "postgres" else []
    result = run("primary", "init", "--dir", str(site), "--listen", "127.0.0.1:70000",
                 *database)
    assert result.returncode == 1
    assert "listen_port" in result.stderr
    assert not site.exists()
