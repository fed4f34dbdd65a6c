"""A selective secondary is never promoted by accident: a partial copy is a blocker."""

from __future__ import annotations

import json
from pathlib import Path

from geo_sync.secondary import reselect
from geo_sync.settings import load_settings
from tests.sites import free_port, primary_site, secondary_site


def test_a_selective_secondary_is_not_promoted_without_force_and_the_drill_says_why(
        tmp_path: Path) -> None:
    with primary_site(tmp_path / "primary", None) as primary:
        site = secondary_site(tmp_path / "secondary", primary, None)
        try:
            with site.config.open("a") as config:
                config.write('\n[secondary.selection]\ninclude = { artifact = ["group-a/**"] }\n')
            rules = load_settings(site.config).require_secondary().selection.rules()
            assert rules.selective
            reselect.apply(site.engine, rules)
            refused = site.cli("promote", "--listen", f"127.0.0.1:{free_port()}",
                               check=False)
            assert refused.returncode == 1
            assert "selective sync is configured" in refused.stderr
            assert "Traceback" not in refused.stderr
            assert not (site.config.parent / "primary.toml").exists()
            drill = site.cli("drill", "--json", "--timeout", "30", check=False)
            assert drill.returncode == 1
            blockers = " ".join(json.loads(drill.stdout)["blockers"])
            assert "partial copy cannot become the primary" in blockers
        finally:
            site.engine.dispose()
