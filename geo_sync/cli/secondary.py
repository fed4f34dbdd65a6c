"""`geo-sync secondary ...` and `geo-sync worker`: run a secondary site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from geo_sync.cli.context import CliContext, GeoGroup, make_console, pass_cli
from geo_sync.db import make_engine
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
@click.option("--secret", required=True, help="The secret `primary add-secondary` printed.")
@click.option("--database-url", help="postgresql+psycopg://... (default: SQLite in --dir).")
@click.option("--broker-url", default="embedded", show_default=True,
              help="redis://... to use separate `geo-sync worker` processes.")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def init_command(directory: Path, primary_url: str, name: str, secret: str,
                 database_url: str | None, broker_url: str, force: bool) -> None:
    """Write a working secondary config and mirror layout, and create the tracking schema."""
    config = init_secondary(directory, primary_url=primary_url, name=name, secret=secret,
                            database_url=database_url, broker_url=broker_url, force=force)
    click.echo(f"wrote {config}")
    click.echo(f"next: geo-sync --config {config} secondary run")


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
    run_secondary(cli_ctx.settings.require_secondary())


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
@pass_cli
def worker(cli_ctx: CliContext, processes: int, threads: int) -> None:
    """Replicate items from the Redis queue (any machine reaching Redis, DB and storage)."""
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
    if primary["reachable"]:
        line += (f"; primary's last event {primary['last_event_id']}; lag {lag['events']} "
                 f"events, {lag['seconds']} s")
    console.print(line)
    if primary["queried"] and not primary["reachable"]:
        console.print(f"[red]primary unreachable:[/] {primary.get('error', '')}")
    if cursor["backfill_required"] or (cursor["backfill_progress"] or "").startswith(
            tuple(f"{n}:" for n in report["types"])):
        console.print(f"backfill: {cursor['backfill_progress'] or 'not started'}")
    if cursor["last_error"]:
        console.print(f"[yellow]cursor error:[/] {cursor['last_error']}")
    for blocker, count in sorted(report.get("waiting_for", {}).items()):
        what = {"primary": "the primary to answer",
                "storage": "space or write access on the mirror's storage"}.get(blocker, blocker)
        console.print(f"[red]{count} item(s) waiting for {what}[/]; they are retried "
                      "as soon as it is back")
    if report["last_errors"]:
        errors = Table(title="last errors")
        for column in ("type", "path", "error", "retry at"):
            errors.add_column(column)
        for error in report["last_errors"]:
            errors.add_row(error["type"], error["path"], error["error"],
                           error["retry_at"] or "")
        console.print(errors)
