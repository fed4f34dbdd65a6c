"""`geo-sync demo` ends converged and verified (it once ended "verified 0/3")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geo_sync.demo import run_demo


def test_the_demo_ends_with_every_copy_verified(tmp_path: Path) -> None:
    def quiet(_stage: str, _status: dict[str, Any]) -> None:
        return None

    differences, final, changes = run_demo(tmp_path, quiet)
    assert differences == [] and changes > 0
    for name, counts in final["types"].items():
        assert counts["synced"] == counts["total"] > 0, (name, counts)
        assert counts["verified"] == counts["synced"], f"{name}: {counts}"
