"""`geo-sync secondary init` asks the primary first: a wrong URL, name or secret is
caught at setup, and nothing is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sites import GEO_SYNC, PrimarySite, free_port


def init(directory: Path, url: str, name: str, secret: str, *extra: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, "secondary", "init", "--dir", str(directory),
                           "--primary-url", url, "--name", name, "--secret", secret, *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_right_url_name_and_secret_write_a_config(primary: PrimarySite,
                                                      tmp_path: Path) -> None:
    done = init(tmp_path / "s", primary.url, primary.secondary, primary.secret)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "config.toml").exists()
    assert "OK       credential accepted: authenticated as 's1'" in done.stderr


@pytest.mark.parametrize("fault", ["wrong secret", "unknown name", "nothing listens",
                                   "wrong path"])
def test_a_bad_url_name_or_secret_writes_nothing_and_says_which(
        primary: PrimarySite, tmp_path: Path, fault: str) -> None:
    url, name, secret = primary.url, primary.secondary, primary.secret
    expected = "credential accepted: the primary refused our credential"
    if fault == "wrong secret":
        secret = "x" * 40
    elif fault == "unknown name":
        name = "ghost"
    elif fault == "nothing listens":
        url, expected = f"http://127.0.0.1:{free_port()}", "primary reachable:"
    else:
        url, expected = f"{primary.url}/nope", "credential accepted: primary answered 404"
    done = init(tmp_path / "s", url, name, secret)
    assert done.returncode == 1
    assert "nothing was written" in done.stderr and expected in done.stderr, done.stderr
    assert "hint:" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_an_offline_setup_can_skip_the_primary(tmp_path: Path) -> None:
    done = init(tmp_path / "s", f"http://127.0.0.1:{free_port()}", "s1", "y" * 40,
                "--skip-primary-check")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "config.toml").exists()
