"""`geo-sync secondary init`: the secret kept off the command line, checked before
anything is written, and a queue name of its own."""

from __future__ import annotations

import os
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.errors import ConfigError
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import MIN_SECRET_BYTES, load_settings
from tests.services import temporary_database
from tests.sites import GEO_SYNC, free_port

SECRET = "s3cret-" + "x" * 40


def init(directory: Path, *args: str, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # No primary runs here: these tests are about the secret and the queue name.
        [GEO_SYNC, "secondary", "init", "--dir", str(directory), "--primary-url",
         "http://127.0.0.1:8650", "--name", "east", "--skip-primary-check", *args],
        capture_output=True, text=True, timeout=120, check=False, input=stdin,
        env={**os.environ, **(env or {})})


def _database_args(backend: str, url: str | None) -> list[str]:
    return ["--database-url", url] if backend == "postgres" and url else []


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield "sqlite", None
        return
    with temporary_database("geo_tracking") as url:
        yield "postgres", url


def test_the_secret_comes_from_an_environment_variable(tmp_path: Path, backend_url) -> None:  # type: ignore[no-untyped-def]
    backend, url = backend_url
    result = init(tmp_path / "s", "--secret-env", "EAST_SECRET",
                  *_database_args(backend, url), env={"EAST_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert load_settings(tmp_path / "s" / "config.toml").require_secondary().secret == SECRET


def test_the_secret_comes_from_a_file_or_stdin_without_its_newline(tmp_path: Path,
                                                                   backend_url) -> None:  # type: ignore[no-untyped-def]
    backend, url = backend_url
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    result = init(tmp_path / "a", "--secret-file", str(secret_file),
                  *_database_args(backend, url))
    assert result.returncode == 0, result.stderr
    assert load_settings(tmp_path / "a" / "config.toml").require_secondary().secret == SECRET
    piped = init(tmp_path / "b", "--secret-file", "-", stdin=SECRET + "\n")
    assert piped.returncode == 0, piped.stderr
    assert load_settings(tmp_path / "b" / "config.toml").require_secondary().secret == SECRET


@pytest.mark.parametrize("args", [[], ["--secret", SECRET, "--secret-env", "X"],
                                  ["--secret-env", "GEO_SYNC_TEST_UNSET_VARIABLE"],
                                  ["--secret-file", "/nonexistent/secret"]])
def test_no_secret_two_secrets_or_an_unreadable_one_is_refused(tmp_path: Path,
                                                                args: list[str]) -> None:
    result = init(tmp_path / "s", *args)
    assert result.returncode != 0
    assert "secret" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(alphabet=string.printable.strip() + "é€", min_size=1, max_size=80))
def test_a_secret_shorter_than_32_bytes_is_refused_and_nothing_written(
        tmp_path_factory: pytest.TempPathFactory, secret: str) -> None:
    directory = tmp_path_factory.mktemp("s")
    target = directory / "site"
    short = len(secret.encode()) < MIN_SECRET_BYTES
    try:
        init_secondary(target, primary_url="http://127.0.0.1:8650", name="east",
                       secret=secret)
    except ConfigError as exc:
        assert short, exc
        assert "at least 32 bytes" in exc.message
        # The secret is not echoed: the message is the same whatever the secret was
        # (a one-letter secret is a substring of any message, so compare whole ones).
        with pytest.raises(ConfigError) as reference:
            init_secondary(directory / "reference", primary_url="http://127.0.0.1:8650",
                           name="east", secret="x")
        assert exc.message == reference.value.message
        assert not target.exists()
    else:
        assert not short
        assert load_settings(target / "config.toml").require_secondary().secret == secret


def test_the_queue_name_is_written_and_a_bad_one_refused(tmp_path: Path, backend_url) -> None:  # type: ignore[no-untyped-def]
    backend, url = backend_url
    ok = init(tmp_path / "a", "--secret-env", "S", "--queue-name", "east_queue",
              *_database_args(backend, url), env={"S": SECRET})
    assert ok.returncode == 0, ok.stderr
    assert load_settings(tmp_path / "a" / "config.toml").require_secondary().queue_name \
        == "east_queue"
    bad = init(tmp_path / "b", "--secret-env", "S", "--queue-name", "no spaces allowed",
               env={"S": SECRET})
    assert bad.returncode == 1 and "queue_name" in bad.stderr
    assert not (tmp_path / "b").exists()


def test_init_against_a_database_server_that_is_down_writes_nothing(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/tracking"
    result = init(tmp_path / "s", "--secret-env", "S", "--database-url", url,
                  env={"S": SECRET})
    assert result.returncode == 1
    assert "nothing was written" in result.stderr
    assert not (tmp_path / "s").exists()
