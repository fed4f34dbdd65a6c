"""What every command gets: the config, loaded once on first use."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from geo_sync.errors import GeoSyncError
from geo_sync.paths import config_path_from

if TYPE_CHECKING:
    from rich.console import Console

    from geo_sync.settings import Settings

# Heavy modules (SQLAlchemy, pydantic, rich, the replicators) are imported where a
# command first needs them, never at start-up: `geo-sync --help` or a status query
# must not pay for what another command uses (0.9 s of imports before this).

PIPE_WIDTH = 200


def make_console() -> Console:
    """Rich output for the CLI. Into a pipe or a file (the demo's log, `| less`) rich
    would assume 80 columns and squeeze every table; there, use a wide line instead
    (COLUMNS still wins)."""
    from rich.console import Console  # noqa: PLC0415 - see the module's imports
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=PIPE_WIDTH)


@dataclass
class CliContext:
    """Lazily loaded settings: `init` commands run before any config exists."""

    config_option: str | None
    #: False for a daemon computing a report for `status`: its own logging stays as is.
    configures_logging: bool = True
    _settings: Settings | None = field(default=None, init=False)
    # Set by long-running commands: their errors are log lines (JSON) like the rest.
    daemon: bool = field(default=False, init=False)

    @property
    def config_path(self) -> Path:
        return config_path_from(self.config_option).resolve()

    @property
    def settings(self) -> Settings:
        from geo_sync.logging import configure_logging  # noqa: PLC0415
        from geo_sync.settings import load_settings  # noqa: PLC0415
        from replicators.type_names import check_type_settings  # noqa: PLC0415

        if self._settings is None:
            self._settings = load_settings(self.config_path)
            if self._settings.secondary is not None:
                check_type_settings(self._settings.secondary)
            if self.configures_logging:
                configure_logging(self._settings.log.level, self._settings.log.format)
        return self._settings


pass_cli = click.make_pass_decorator(CliContext)


def daemon_answer(cli_ctx: CliContext, command: str) -> dict[str, Any] | None:
    """``command``'s answer from the `secondary run` on this machine with this config
    (geo_sync.local_status), or None when none answers: then the command computes it."""
    from geo_sync.local_status import ask  # noqa: PLC0415 - see the module's imports

    try:
        config_path = cli_ctx.config_path
    except GeoSyncError:
        return None  # the command itself says what is wrong
    return ask(config_path, command)


def import_httpx_plain() -> None:
    """Import httpx (the client to the primary) without rich and pygments, which it
    loads only for its own command line: for commands that print no tables (0.1 s or
    more of start-up, see ``geo_sync.logging.without``)."""
    from geo_sync.logging import without  # noqa: PLC0415 - see the module's imports

    with without("rich", "pygments"):
        import httpx  # noqa: F401, PLC0415


class GeoGroup(click.Group):
    """A click group that turns our errors into one-line messages and exit status 1.

    Subcommands may be registered lazily (``lazy``: name -> "module:attribute", with
    their one-line help for the listing), so that neither listing them nor running
    one imports the modules of the others."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attribute = self.lazy[cmd_name][0].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing, from the lazy commands' registered help (nothing imported)."""
        rows = [(name, self.lazy[name][1] if name in self.lazy and name not in self.commands
                 else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GeoSyncError as exc:
            _fail(ctx, exc.message, exc.hint)
        except Exception as exc:
            # Not imported at start-up: without SQLAlchemy loaded, this is not its error.
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.OperationalError):
                raise
            _fail(ctx, *database_unreachable(exc))


def database_unreachable(exc: Exception) -> tuple[str, str]:
    """The one-line message and hint for a SQLAlchemy error reaching the database."""
    orig = getattr(exc, "orig", None)
    reason = str(orig or exc).strip().splitlines()[0]
    return (f"database unreachable: {reason}",
            "check that the database server is running and database_url in the config is right")


def _fail(ctx: click.Context, message: str, hint: str) -> NoReturn:
    """A one-line error: plain text for commands, a JSON log line for daemons."""
    cli_ctx = ctx.find_object(CliContext)
    if cli_ctx is not None and cli_ctx.daemon and not sys.stderr.isatty():
        from geo_sync.logging import get_logger  # noqa: PLC0415

        get_logger("cli").error("cannot_start", error=message, hint=hint)
        raise click.exceptions.Exit(1)
    raise click.ClickException(f"{message} (hint: {hint})" if hint else message) from None
