"""What every command gets: the config, loaded once on first use."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import click
import sqlalchemy.exc
from rich.console import Console

from geo_sync.errors import GeoSyncError
from geo_sync.logging import configure_logging, get_logger
from geo_sync.settings import Settings, config_path_from, load_settings
from replicators.registry import check_type_settings

PIPE_WIDTH = 200


def make_console() -> Console:
    """Rich output for the CLI. Into a pipe or a file (the demo's log, `| less`) rich
    would assume 80 columns and squeeze every table; there, use a wide line instead
    (COLUMNS still wins)."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=PIPE_WIDTH)


@dataclass
class CliContext:
    """Lazily loaded settings: `init` commands run before any config exists."""

    config_option: str | None
    _settings: Settings | None = field(default=None, init=False)
    # Set by long-running commands: their errors are log lines (JSON) like the rest.
    daemon: bool = field(default=False, init=False)

    @property
    def config_path(self) -> Path:
        return config_path_from(self.config_option).resolve()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            if self._settings.secondary is not None:
                check_type_settings(self._settings.secondary)
            configure_logging(self._settings.log.level, self._settings.log.format)
        return self._settings


pass_cli = click.make_pass_decorator(CliContext)


class GeoGroup(click.Group):
    """A click group that turns our errors into one-line messages and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GeoSyncError as exc:
            _fail(ctx, exc.message, exc.hint)
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            _fail(ctx, f"database unreachable: {reason}", "check that the database server "
                  "is running and database_url in the config is right")


def _fail(ctx: click.Context, message: str, hint: str) -> NoReturn:
    """A one-line error: plain text for commands, a JSON log line for daemons."""
    cli_ctx = ctx.find_object(CliContext)
    if cli_ctx is not None and cli_ctx.daemon and not sys.stderr.isatty():
        get_logger("cli").error("cannot_start", error=message, hint=hint)
        raise click.exceptions.Exit(1)
    raise click.ClickException(f"{message} (hint: {hint})" if hint else message) from None
