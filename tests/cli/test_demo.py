"""`geo-sync demo` (what `make demo` runs) cleans up after itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.sites import GEO_SYNC


def test_the_demo_removes_its_temporary_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([GEO_SYNC, "demo"], capture_output=True, text=True, timeout=300,
                            check=False, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "geo-sync-demo-" in result.stdout, "the demo did not say where it ran"
    assert "removed" in result.stdout
    assert list(scratch.iterdir()) == []


def test_the_demo_keeps_a_directory_it_was_given_and_can_end_with_a_drill(tmp_path: Path
                                                                         ) -> None:
    result = subprocess.run([GEO_SYNC, "demo", "--drill", "--dir", str(tmp_path / "kept")],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "kept" / "primary" / "config.toml").exists()
    assert (tmp_path / "kept" / "secondary" / "config.toml").exists()
    assert "RPO now: 0" in result.stdout and "ready to take over: yes" in result.stdout
    assert list((tmp_path / "kept" / "secondary" / "drills").glob("drill-*.json"))
