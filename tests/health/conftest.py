"""Running `geo-sync check` for real and reading its JSON."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deployment import wait_for
from tests.sites import GEO_SYNC, SecondarySite


@dataclass(frozen=True)
class Checked:
    code: int
    report: dict[str, Any]
    text: str

    def level(self, name: str) -> str:
        return str(self.result(name)["status"])

    def result(self, name: str) -> dict[str, Any]:
        found = [c for c in self.report["checks"] if c["check"] == name]
        assert found, f"no check {name!r} in {[c['check'] for c in self.report['checks']]}"
        return dict(found[0])


def run_check(config: Path, **env: str) -> Checked:
    """`check --json` and plain `check` with ``env`` overrides; both must agree."""
    full = {**os.environ, **env}
    as_json = subprocess.run([GEO_SYNC, "--config", str(config), "check", "--json"],
                             capture_output=True, text=True, env=full, timeout=120, check=False)
    plain = subprocess.run([GEO_SYNC, "--config", str(config), "check"],
                           capture_output=True, text=True, env=full, timeout=120, check=False)
    report = json.loads(as_json.stdout)
    assert report["exit_code"] == as_json.returncode
    return Checked(as_json.returncode, report, plain.stdout)


@pytest.fixture
def running(secondary: SecondarySite, tmp_path: Path) -> Iterator[SecondarySite]:
    """The secondary with its `secondary run` (embedded workers) up."""
    with (tmp_path / "run.log").open("wb") as log:
        proc = subprocess.Popen([GEO_SYNC, "--config", str(secondary.config), "secondary",
                                 "run"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: run_check(secondary.config).level("log cursor") == "OK",
                 "secondary run to hold the cursor lease", 60)
        yield secondary
    finally:
        proc.terminate()
        proc.wait(timeout=60)
