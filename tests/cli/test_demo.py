"""`geo-sync demo` (what `make demo` runs) ends converged and verified (it once ended
"verified 0/3") and cleans up after itself. Two demo runs in all: each costs the suite
about a minute."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from geo_sync.db import make_engine
from geo_sync.secondary.status import secondary_status
from geo_sync.settings import load_settings
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


def test_the_demo_keeps_a_directory_it_was_given_with_every_copy_verified_and_a_drill(
        tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    result = subprocess.run([GEO_SYNC, "demo", "--drill", "--dir", str(kept)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (kept / "primary" / "config.toml").exists()
    assert "RPO now: 0" in result.stdout and "ready to take over: yes" in result.stdout
    assert list((kept / "secondary" / "drills").glob("drill-*.json"))
    settings = load_settings(kept / "secondary" / "config.toml").require_secondary()
    engine = make_engine(settings.database_url)
    try:
        final = secondary_status(engine, None, settings.name)
    finally:
        engine.dispose()
    for name, counts in final["types"].items():
        assert counts["synced"] == counts["total"] > 0, (name, counts)
        assert counts["verified"] == counts["synced"], f"{name}: {counts}"
