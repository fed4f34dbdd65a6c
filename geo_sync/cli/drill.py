"""`geo-sync drill`: a failover rehearsal on a secondary (geo_sync.failover.drill)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from geo_sync.cli.context import CliContext, pass_cli


@click.command()
@click.option("--planned", is_flag=True, help="Measure the catch-up with the primary in "
              "maintenance mode (turned off again at the end).")
@click.option("--timeout", type=click.FloatRange(1, 86400), default=600.0,
              show_default=True, help="Seconds to wait for the catch-up.")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report (JSON) here [default: drills/drill-<time>.json next to "
              "the config].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_cli
def drill(cli_ctx: CliContext, planned: bool, timeout: float, report_file: Path | None,
          as_json: bool) -> None:
    """Rehearse a failover on a secondary: RPO now, catch-up time, promotion readiness,
    estimated RTO.

    RPO now is what would be lost if the primary vanished this second. Exit 0 only if
    this site could take over now with RPO 0; the report is written to a file too."""
    from rich.table import Table  # noqa: PLC0415

    from geo_sync.cli.context import make_console  # noqa: PLC0415
    from geo_sync.cli.failover import lost_lines  # noqa: PLC0415
    from geo_sync.failover.drill import drill as run  # noqa: PLC0415
    from geo_sync.failover.drill import write_report  # noqa: PLC0415

    settings = cli_ctx.settings.require_secondary()
    config_dir = cli_ctx.config_path.parent
    result = run(settings, config_dir, planned=planned, timeout=timeout)
    report = result.to_json()
    target = write_report(result, config_dir, report_file)
    if as_json:
        click.echo(json.dumps({**report, "report_file": str(target)}, indent=2))
    else:
        console = make_console()
        table = Table(title=f"failover drill ({'planned' if planned else 'unplanned'})")
        table.add_column("what")
        table.add_column("now")
        rpo = report["rpo_now"]
        table.add_row("RPO now", "0: nothing would be lost" if rpo["zero"] else
                      f"{rpo['events_not_applied']} event(s), {rpo['items']} item(s), "
                      f"{rpo['bytes']} bytes; oldest {rpo['oldest_change_age_seconds']} s")
        table.add_row("catch-up", f"{result.catch_up_seconds} s" if result.catch_up_seconds
                      is not None else f"not measured: {result.catch_up_error}")
        table.add_row("estimated RTO", f"{result.estimated_rto_seconds} s")
        table.add_row("ready to take over", "yes" if result.ready else "no")
        console.print(table)
        if not rpo["zero"]:
            for line in lost_lines(rpo):
                click.echo(line)
        for blocker in result.blockers:
            click.echo(f"blocker: {blocker}")
        for note in result.notes:
            click.echo(f"note: {note}")
        click.echo(f"report: {target}")
    sys.exit(0 if result.ready else 1)
