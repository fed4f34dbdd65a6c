"""`geo-sync` imports a subcommand's module only when that command runs, and lists
every command with its own help without importing any."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from geo_sync.cli.main import COMMANDS
from tests.sites import GEO_SYNC

# What `--help` must not import: each costs a noticeable part of a second.
HEAVY = ("sqlalchemy", "alembic", "dramatiq", "redis", "pygit2", "uvicorn", "httpx", "rich")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_of_a_lazy_command_is_its_own(name: str) -> None:
    target, listed = COMMANDS[name]
    module, attribute = target.split(":")
    command = getattr(importlib.import_module(module), attribute)
    assert command.name == name
    assert listed == command.get_short_help_str(limit=200)


def test_help_lists_every_command_without_importing_them() -> None:
    probe = ("import sys; from click.testing import CliRunner; "
             "from geo_sync.cli.main import cli; "
             "result = CliRunner().invoke(cli, ['--help']); "
             "print(result.output); "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    listing, imported = done.stdout.rsplit("\n", 2)[0], done.stdout.rsplit("\n", 2)[1]
    assert imported == "[]", f"--help imported {imported}"
    for name in [*COMMANDS, "status"]:
        assert f"  {name} " in listing, listing


def test_a_lazy_command_runs_from_the_console_script() -> None:
    done = subprocess.run([GEO_SYNC, "secondary", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Follow the primary" in done.stdout
