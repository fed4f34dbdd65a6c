"""`geo-sync`: one entry point, subcommands per site role."""

from __future__ import annotations

import json

import click

from geo_sync.cli.context import CliContext, GeoGroup, pass_cli
from geo_sync.cli.demo import demo
from geo_sync.cli.primary import primary, primary_status_report, render_primary_status
from geo_sync.cli.recovery import drift, orphans, resync, verify
from geo_sync.cli.secondary import (
    render_secondary_status,
    secondary,
    secondary_status_report,
    worker,
)
from geo_sync.logging import configure_logging


@click.group(cls=GeoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    metavar="FILE",
    envvar="GEO_SYNC_CONFIG",
    help="Config file (TOML); defaults to $GEO_SYNC_CONFIG.",
)
@click.version_option(package_name="geo-sync")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None) -> None:
    """geo-sync: mirror a CI site's repositories, artifacts and job logs to secondaries."""
    configure_logging("warning", "json")
    ctx.obj = CliContext(config_option)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_cli
def status(cli_ctx: CliContext, as_json: bool) -> None:
    """Show the state of this site: replication per type, cursor lag, last errors
    (secondary); catalog, event log and secondaries (primary)."""
    if cli_ctx.settings.role == "primary":
        report, render = primary_status_report(cli_ctx), render_primary_status
    else:
        report, render = secondary_status_report(cli_ctx), render_secondary_status
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        render(report)


cli.add_command(primary)
for command in (drift, verify, resync, orphans):
    cli.add_command(command)
cli.add_command(secondary)
cli.add_command(worker)
cli.add_command(demo)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geo-sync")
