"""`geo-sync`: one entry point, subcommands per site role."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geo_sync.cli.context import (
    CliContext,
    GeoGroup,
    daemon_answer,
    database_unreachable,
    import_httpx_plain,
    pass_cli,
)
from geo_sync.errors import GeoSyncError

if TYPE_CHECKING:
    from geo_sync.cli.secondary import ReportConnections
    from geo_sync.health.result import CheckResult

#: Each subcommand's module, imported only when that command runs, and its one-line
#: help for `geo-sync --help` (tests/cli check these match the commands' own).
COMMANDS = {
    "primary": ("geo_sync.cli.primary:primary", "Run and feed the primary site."),
    "check": ("geo_sync.cli.check:check", "Check this site: one line per check (OK, WARNING, "
              "CRITICAL or UNKNOWN), with a hint for each that is not OK."),
    "drift": ("geo_sync.cli.recovery:drift", "Report items missing on the mirror, mismatched, "
              "orphaned, missing on the primary or stuck, each with what to do."),
    "verify": ("geo_sync.cli.recovery:verify",
               "Verify items against the primary now, in this process, with a progress bar."),
    "resync": ("geo_sync.cli.recovery:resync",
               "Sync items again now: --id (with TYPE), --failed or --all is required."),
    "orphans": ("geo_sync.cli.recovery:orphans", "List copies on the mirror that no registry "
                "row accounts for; --delete removes them."),
    "secondary": ("geo_sync.cli.secondary:secondary",
                  "Run a secondary site that mirrors a primary."),
    "worker": ("geo_sync.cli.secondary:worker", "Replicate items from the Redis queue (any "
               "machine reaching Redis, DB and storage)."),
    "promote": ("geo_sync.cli.failover:promote", "Make this secondary the primary: planned "
                "(RPO 0, the old primary fenced) or --force (unplanned)."),
    "drill": ("geo_sync.cli.drill:drill", "Rehearse a failover on a secondary: RPO now, "
              "catch-up time, promotion readiness, estimated RTO."),
    "demo": ("geo_sync.cli.demo:demo", "Run a primary and a secondary in embedded mode and "
             "drive a CI workload through them."),
}


@click.group(cls=GeoGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
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
    from geo_sync.logging import configure_logging  # noqa: PLC0415 - see COMMANDS

    configure_logging("warning", "json")
    ctx.obj = CliContext(config_option)


@cli.command(epilog="Exit status follows the verdict, as for `geo-sync check`: 0 Healthy, "
             "1 Degraded, 2 Unhealthy (3 when the verdict could not be reached).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (always JSON, errors included).")
@pass_cli
def status(cli_ctx: CliContext, as_json: bool) -> None:
    """Show the state of this site and a verdict (Healthy, Degraded, Unhealthy):
    replication per type, events seen and processed, workers, cursor holder, last
    errors (secondary); catalog, event log and secondaries (primary)."""
    outcome = daemon_status(cli_ctx)
    if outcome is None:
        if as_json:
            import_httpx_plain()  # httpx's own command line: JSON needs neither rich nor pygments
        outcome = site_status(cli_ctx)
    if as_json:
        click.echo(json.dumps(outcome.report, indent=2))
    elif outcome.render is not None:
        outcome.render(outcome.report)
    else:
        word = outcome.report["verdict"]["verdict"] if outcome.reasons else "Unknown"
        hint = outcome.report["hint"]
        click.echo(f"{word}: {outcome.report['error']}" + (f" (hint: {hint})" if hint else ""),
                   err=True)
    sys.exit(outcome.exit_code)


@dataclass(frozen=True)
class StatusOutcome:
    """What `status` shows: the report (with its verdict), or, when there is none, the
    error, its hint and the verdict the checks reach; and the exit code."""

    report: dict[str, Any]
    exit_code: int
    #: Renders ``report`` for a terminal; None when there is no report, only an error.
    render: Callable[[dict[str, Any]], None] | None = None
    #: Whether the checks gave reasons (for the error line's first word).
    reasons: bool = False


def site_status(cli_ctx: CliContext, connections: ReportConnections | None = None
                ) -> StatusOutcome:
    """The status of the site ``cli_ctx`` configures, as `status` prints it (the test
    rigs call this in their own process: a `status` process is mostly Python start-up);
    a secondary's over ``connections`` when given (a daemon's, kept across reports)."""
    # Only what this command uses (see COMMANDS): a status query at scale is mostly
    # Python start-up otherwise.
    import sqlalchemy.exc  # noqa: PLC0415

    from geo_sync.cli.check import load_or_report, site_checks  # noqa: PLC0415
    from geo_sync.health.result import CheckResult, verdict  # noqa: PLC0415

    settings = load_or_report(cli_ctx)
    if isinstance(settings, CheckResult):
        return _status_failed(settings.message, settings.hint, [settings])
    results: list[CheckResult] | None = None
    try:
        if settings.role == "primary":
            from geo_sync.cli.primary import (  # noqa: PLC0415
                primary_status_report,
                render_primary_status,
            )
            report, render = primary_status_report(cli_ctx), render_primary_status
        else:
            from geo_sync.cli.secondary import (  # noqa: PLC0415
                render_secondary_status,
                secondary_status_report,
            )
            # The checks share the report's connection and client (one of each).
            (report, results), render = secondary_status_report(cli_ctx, connections), \
                render_secondary_status
    except (GeoSyncError, sqlalchemy.exc.SQLAlchemyError) as exc:
        message, hint = _explain(exc)
        return _status_failed(message, hint, site_checks(settings))
    if results is None:
        results = site_checks(settings, report)
    overall = verdict(results)
    report["verdict"] = overall.to_json()
    return StatusOutcome(report, int(overall.level), render)


def daemon_status(cli_ctx: CliContext) -> StatusOutcome | None:
    """The status as the daemon running on this machine with this config computed it
    (geo_sync.local_status), or None when none answers."""
    answer = daemon_answer(cli_ctx, "status")
    if answer is None:
        return None
    return StatusOutcome(answer["report"], int(answer["exit_code"]),
                         _render_secondary if answer.get("render") else None,
                         bool(answer.get("reasons")))


def _render_secondary(report: dict[str, Any]) -> None:
    from geo_sync.cli.secondary import render_secondary_status  # noqa: PLC0415 - for people

    render_secondary_status(report)


def daemon_answers(config_path: Path, connections: ReportConnections, command: str
                   ) -> dict[str, Any]:
    """What `secondary run` sends `status` or `check` (geo_sync.local_status): the
    answer the command would compute itself, from the config file as it is now, and
    who computed it."""
    cli_ctx = CliContext(str(config_path), configures_logging=False)
    answered_by = {"process": "secondary run", "pid": os.getpid()}
    if command == "check":
        from geo_sync.cli.check import check_answer  # noqa: PLC0415

        answer = check_answer(cli_ctx, connections)
        answer["document"]["answered_by"] = answered_by
        return answer
    outcome = site_status(cli_ctx, connections)
    outcome.report["answered_by"] = answered_by
    return {"report": outcome.report, "exit_code": outcome.exit_code,
            "render": outcome.render is not None, "reasons": outcome.reasons}


def _explain(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, GeoSyncError):
        return exc.message, exc.hint
    return database_unreachable(exc)


def _status_failed(message: str, hint: str, results: list[CheckResult]) -> StatusOutcome:
    """No report: say why, with the verdict the checks reach (3 Unknown at best)."""
    from geo_sync.health.result import Level, verdict  # noqa: PLC0415
    overall = verdict(results)
    level = overall.level if overall.level is not Level.OK else Level.UNKNOWN
    return StatusOutcome({"error": message, "hint": hint or None,
                          "verdict": {**overall.to_json(), "exit_code": int(level)}},
                         int(level), reasons=bool(overall.reasons))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geo-sync")
