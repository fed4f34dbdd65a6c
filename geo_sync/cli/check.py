"""`geo-sync check` and the verdict of `geo-sync status`: exit codes a monitoring
system can trust (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from geo_sync.cli.context import CliContext, daemon_answer, import_httpx_plain, pass_cli
from geo_sync.errors import ConfigError
from geo_sync.health.result import CheckResult, Level, verdict, worst

if TYPE_CHECKING:
    from geo_sync.cli.secondary import ReportConnections
    from geo_sync.settings import Settings

EXIT_CODES = """Exit status (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, the worst of
all checks (CRITICAL outweighs UNKNOWN, which outweighs WARNING)."""


def site_checks(settings: Settings, report: dict[str, Any] | None = None,
                connections: ReportConnections | None = None) -> list[CheckResult]:
    """Every check of this site; ``report`` is a status report already taken (its
    registry counts are reused); a secondary's over ``connections`` when given."""
    # Each role's checks import that role's code only (see cli.main.COMMANDS).
    if settings.role == "primary":
        from geo_sync.health.primary import primary_health_checks  # noqa: PLC0415

        return primary_health_checks(settings.require_primary())
    from geo_sync.health.secondary import secondary_checks  # noqa: PLC0415

    secondary = settings.require_secondary()
    types = (report or {}).get("types")
    if connections is None:
        return secondary_checks(secondary, types)
    engine, client = connections.get(secondary)
    try:
        return secondary_checks(secondary, types, engine=engine, client=client)
    finally:
        connections.release()


def load_or_report(cli_ctx: CliContext) -> Settings | CheckResult:
    """The settings, or the CRITICAL config check saying why there are none."""
    try:
        return cli_ctx.settings
    except ConfigError as exc:
        return CheckResult("config", Level.CRITICAL, exc.message, exc.hint)


def check_answer(cli_ctx: CliContext, connections: ReportConnections | None = None
                 ) -> dict[str, Any]:
    """What `check` prints: its JSON ``document``, its ``lines``, and its ``exit_code``
    (computed by the command, or by `secondary run` for it: geo_sync.local_status)."""
    settings = load_or_report(cli_ctx)
    if isinstance(settings, CheckResult):
        results, role = [settings], None
    else:
        results, role = site_checks(settings, connections=connections), settings.role
    overall = worst(results)
    return {"document": {"role": role, "status": overall.name, **verdict(results).to_json(),
                         "checks": [r.to_json() for r in results]},
            "lines": [*(result.line() for result in results),
                      f"{overall.name}: {verdict(results).word}"],
            "exit_code": int(overall)}


@click.command(epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_cli
def check(cli_ctx: CliContext, as_json: bool) -> None:
    """Check this site: one line per check (OK, WARNING, CRITICAL or UNKNOWN), with a
    hint for each that is not OK."""
    answer = daemon_answer(cli_ctx, "check")
    if answer is None:
        import_httpx_plain()  # lines, no tables: neither rich nor pygments
        answer = check_answer(cli_ctx)
    if as_json:
        click.echo(json.dumps(answer["document"], indent=2))
    else:
        for line in answer["lines"]:
            click.echo(line)
    sys.exit(int(answer["exit_code"]))
