"""`geo-sync`: one entry point, subcommands per site role."""

from __future__ import annotations

import json

import click

from geo_sync.cli.context import CliContext, GeoGroup, pass_cli
from geo_sync.cli.demo import demo
from geo_sync.cli.primary import primary, primary_status_report, render_primary_status
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
    """Show the state of this site (primary: catalog, event log, secondaries)."""
    report = primary_status_report(cli_ctx)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        render_primary_status(report)


cli.add_command(primary)
cli.add_command(demo)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geo-sync")
