"""`geo-sync primary add-secondary --exist-ok`: provisioning that can run again."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.sites import GEO_SYNC, PrimarySite

SECRET = "provisioned-" + "p" * 40


def _add(site: PrimarySite, *args: str, secret: str = SECRET
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, "--config", str(site.config), "primary", "add-secondary",
                           *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "EAST_SECRET": secret})


def test_add_secondary_with_exist_ok_runs_again_and_refuses_another_secret(
        primary: PrimarySite, tmp_path: Path) -> None:
    first = _add(primary, "east", "--secret-env", "EAST_SECRET", "--exist-ok")
    assert first.returncode == 0, first.stderr
    again = _add(primary, "east", "--secret-env", "EAST_SECRET", "--exist-ok")
    assert again.returncode == 0, again.stderr
    assert "already registered; nothing changed" in again.stdout
    other = _add(primary, "east", "--secret-env", "EAST_SECRET", "--exist-ok",
                 secret="another-" + "q" * 40)
    assert other.returncode == 1
    assert "different secret" in other.stderr and "q" * 40 not in other.stderr
    strict = _add(primary, "east", "--secret-env", "EAST_SECRET")
    assert strict.returncode == 1 and "already registered" in strict.stderr
    broken = subprocess.run([GEO_SYNC, "--config", str(tmp_path / "absent.toml"), "primary",
                             "add-secondary", "east", "--exist-ok"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert broken.returncode == 1, "--exist-ok must not hide other errors"
