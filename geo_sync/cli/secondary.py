"""`geo-sync secondary ...` and `geo-sync worker`: run a secondary site."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from geo_sync.cli.context import CliContext, GeoGroup, make_console, pass_cli
from geo_sync.db import make_engine
from geo_sync.errors import InvalidInput
from geo_sync.migrate import TRACKING
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.daemon import run_secondary
from geo_sync.secondary.site import init_secondary
from geo_sync.secondary.status import secondary_status
from geo_sync.secondary.worker import run_workers

console = make_console()


@click.group(cls=GeoGroup)
def secondary() -> None:
    """Run a secondary site that mirrors a primary."""


@secondary.command("init")
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True,
              help="Directory for the config, the embedded tracking DB and the mirror.")
@click.option("--primary-url", required=True, help="http(s)://host:port of the primary.")
@click.option("--name", required=True, help="This secondary's name, as registered.")
@click.option("--secret-env", metavar="VAR",
              help="Read the secret `primary add-secondary` printed from environment "
              "variable VAR.")
@click.option("--secret-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the secret from this file ('-' for standard input).")
@click.option("--secret", help="The secret itself. Avoid: it shows in `ps` and shell "
              "history; prefer --secret-env or --secret-file.")
@click.option("--database-url", help="postgresql+psycopg://... (default: SQLite in --dir).")
@click.option("--broker-url", default="embedded", show_default=True,
              help="redis://... to use separate `geo-sync worker` processes.")
@click.option("--queue-name", default="geo_sync", show_default=True,
              help="Queue and Redis key namespace; give each secondary sharing one Redis "
              "its own.")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def init_command(directory: Path, primary_url: str, name: str, secret_env: str | None,
                 secret_file: Path | None, secret: str | None, database_url: str | None,
                 broker_url: str, queue_name: str, force: bool) -> None:
    """Write a working secondary config and mirror layout, and create the tracking schema."""
    config = init_secondary(directory, primary_url=primary_url, name=name,
                            secret=read_secret(secret_env, secret_file, secret),
                            database_url=database_url, broker_url=broker_url, force=force,
                            extra={"queue_name": queue_name})
    click.echo(f"wrote {config}")
    click.echo(f"next: geo-sync --config {config} secondary run")


def read_secret(env: str | None, file: Path | None, literal: str | None) -> str:
    """The secret from exactly one of --secret-env, --secret-file and --secret."""
    if sum(option is not None for option in (env, file, literal)) != 1:
        raise InvalidInput("give the secret with exactly one of --secret-env, --secret-file "
                           "and --secret",
                           hint="--secret-env VAR or --secret-file FILE keep it out of `ps` "
                           "and shell history")
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            raise InvalidInput(f"environment variable {env} is not set or empty",
                               hint=f"export {env} with the secret `primary add-secondary` "
                               "printed")
        return value
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the secret from {file}: {exc}",
                               hint="name a readable text file holding only the secret") from None
        # A trailing newline from `echo` or an editor is not part of the secret.
        value = text.strip()
        if not value:
            raise InvalidInput(f"{file} is empty", hint="put the secret in it")
        return value
    assert literal is not None
    return literal


@secondary.command()
@pass_cli
def migrate(cli_ctx: CliContext) -> None:
    """Upgrade the tracking database schema to this version of geo-sync."""
    before, after = TRACKING.upgrade_url(cli_ctx.settings.require_secondary().database_url)
    click.echo(f"tracking schema: {before or 'empty'} -> {after}")


@secondary.command()
@pass_cli
def run(cli_ctx: CliContext) -> None:
    """Follow the primary: log cursor and scheduler (and embedded workers)."""
    cli_ctx.daemon = True
    run_secondary(cli_ctx.settings.require_secondary())


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
@pass_cli
def worker(cli_ctx: CliContext, processes: int, threads: int) -> None:
    """Replicate items from the Redis queue (any machine reaching Redis, DB and storage)."""
    cli_ctx.daemon = True
    cli_ctx.settings.require_secondary()
    run_workers(cli_ctx.config_path, processes, threads)


def secondary_status_report(cli_ctx: CliContext) -> dict[str, Any]:
    settings = cli_ctx.settings.require_secondary()
    engine = make_engine(settings.database_url)
    TRACKING.require_current(engine)
    client = PrimaryClient(settings)
    try:
        return secondary_status(engine, client, settings.name)
    finally:
        client.close()
        engine.dispose()


def render_secondary_status(report: dict[str, Any]) -> None:
    """The secondary's status as tables."""
    table = Table(title=f"secondary {report['name']}")
    columns = ("total", "synced", "pending", "started", "failed", "missing_on_primary",
               "verified", "verification_failed", "mismatched")
    table.add_column("type")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for name, counts in report["types"].items():
        table.add_row(name, *(str(counts.get(column, 0)) for column in columns))
    console.print(table)
    cursor, lag, primary = report["cursor"], report["lag"], report["primary"]
    line = (f"cursor: last event processed {cursor['last_event_id_processed']}, "
            f"{cursor['events_applied']} applied")
    if primary["reachable"] and not primary.get("refused"):
        last = primary["last_event_id"]
        line += (f"; primary's last event {last if last is not None else 'none yet'}; "
                 f"lag {lag['events']} events, {lag['seconds']} s")
    console.print(line)
    if primary.get("refused"):
        console.print(f"[red]primary refuses us:[/] {primary.get('error', '')}",
                      highlight=False)
    elif primary["queried"] and not primary["reachable"]:
        # The error says "primary unreachable ..." itself: no second prefix.
        console.print(f"[red]{primary.get('error', '')}[/]", highlight=False)
    if cursor["backfill_required"] or (cursor["backfill_progress"] or "").startswith(
            tuple(f"{n}:" for n in report["types"])):
        console.print(f"backfill: {cursor['backfill_progress'] or 'not started'}")
    if cursor["last_error"]:
        console.print(f"[yellow]cursor error:[/] {cursor['last_error']}")
    if report["last_errors"]:
        errors = Table(title="last errors")
        for column in ("type", "path", "error", "retry at"):
            errors.add_column(column)
        for error in report["last_errors"]:
            errors.add_row(error["type"], error["path"], error["error"],
                           error["retry_at"] or "")
        console.print(errors)
