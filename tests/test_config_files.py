"""The deployable files in config/ stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from geo_sync.cli.main import cli
from geo_sync.settings import load_settings

CONFIG = Path(__file__).resolve().parent.parent / "config"


@pytest.mark.parametrize("example", sorted(CONFIG.glob("*.example.toml")), ids=lambda p: p.name)
def test_example_configs_load(example: Path) -> None:
    settings = load_settings(example)
    assert settings.role in example.name


def test_systemd_units_run_existing_commands() -> None:
    for unit in sorted((CONFIG / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                args = line.split("=", 1)[1].split()[1:]
                result = CliRunner().invoke(cli, [*args, "--help"])
                assert result.exit_code == 0, f"{unit.name}: {line}\n{result.output}"
