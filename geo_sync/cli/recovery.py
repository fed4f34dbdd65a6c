"""`geo-sync drift`, `verify`, `resync` and `orphans`: find drift, check, repair."""

from __future__ import annotations

import json
import sys

import click
from rich.progress import Progress
from rich.table import Table

from geo_sync.cli.context import CliContext, make_console, pass_cli
from geo_sync.db import make_engine, write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.migrate import TRACKING
from geo_sync.secondary.runtime import open_runtime
from geo_sync.tracking import verification_rows
from geo_sync.tracking.states import SyncState, Verdict
from replicators.type_map import REPLICATORS, copy_for
from verification.drift import find_drift
from verification.recovery import (
    Planned,
    delete_orphans,
    execute_resync,
    plan_orphans,
    select_rows,
)
from verification.verifier import verify_one

console = make_console()
TYPE = click.argument("type_name", metavar="[TYPE]", required=False,
                      type=click.Choice(sorted(REPLICATORS)))


def _one_selector(ids: tuple[int, ...], failed: bool, all_: bool) -> None:
    if sum((bool(ids), failed, all_)) > 1:
        raise InvalidInput("choose one of --id, --failed and --all")


def _print_plan(plan: list[Planned], verb: str) -> None:
    table = Table(title=f"{verb}: {len(plan)} item(s)")
    for column in ("type", "id", "path", "sync", "verification"):
        table.add_column(column)
    for row in plan:
        table.add_row(row.type, str(row.id), row.path, row.state, row.verification_state)
    console.print(table)


@click.command(epilog="Exit status: 0 no findings, 1 findings (so a script or a "
               "monitoring system can act on them).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_cli
def drift(cli_ctx: CliContext, as_json: bool) -> None:
    """Report items missing on the mirror, mismatched, orphaned, missing on the
    primary or stuck, each with what to do."""
    settings = cli_ctx.settings.require_secondary()
    engine = make_engine(settings.database_url)
    TRACKING.require_current(engine)
    findings = find_drift(engine, settings.mirror_root)
    if as_json:
        click.echo(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        table = Table(title=f"drift: {len(findings)} finding(s)")
        for column in ("kind", "type", "path", "detail", "what to do"):
            table.add_column(column)
        for f in findings:
            table.add_row(f.kind, f.type, f.path, f.detail, f.action)
        console.print(table)
    sys.exit(1 if findings else 0)


@click.command()
@TYPE
@click.option("--id", "ids", type=int, multiple=True, help="Registry id (repeatable).")
@click.option("--failed", is_flag=True, help="Only failed or mismatched items.")
@click.option("--all", "all_", is_flag=True, help="Every item (of TYPE, if given).")
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask before resyncing --all or --failed (for scripts).")
@pass_cli
def resync(cli_ctx: CliContext, type_name: str | None, ids: tuple[int, ...], failed: bool,
           all_: bool, dry_run: bool, yes: bool) -> None:
    """Sync items again now: --id (with TYPE), --failed or --all is required.

    The plan is printed first; --all and --failed then ask for confirmation on a
    terminal, and need --yes when run from a script."""
    _one_selector(ids, failed, all_)
    if not (ids or failed or all_):
        raise InvalidInput("say what to resync: --id ID (with TYPE), --failed or --all",
                           hint="--all re-downloads every item; try --dry-run first")
    settings = cli_ctx.settings.require_secondary()
    engine = make_engine(settings.database_url)
    TRACKING.require_current(engine)
    plan = select_rows(engine, type_name, ids=ids, failed=failed)
    if not plan:
        click.echo("nothing to resync")
        return
    _print_plan(plan, "would resync" if dry_run else "resync")
    if dry_run:
        return
    if not ids and not yes:
        _confirm(f"resync {len(plan)} item(s)?")
    click.echo(f"{execute_resync(engine, plan)} item(s) queued for resync")


def _confirm(question: str) -> None:
    """Ask on a terminal; refuse without asking anywhere else (a script must say --yes)."""
    if not sys.stdin.isatty():
        raise InvalidInput("not resyncing without confirmation: standard input is not a "
                           "terminal", hint="pass --yes to confirm from a script")
    if not click.confirm(question, default=False):
        raise click.exceptions.Exit(1)


@click.command(epilog="Exit status: 0 every copy verified matched, 1 mismatches found.")
@TYPE
@click.option("--id", "ids", type=int, multiple=True, help="Registry id (repeatable).")
@click.option("--failed", is_flag=True, help="Only failed or mismatched items.")
@click.option("--all", "all_", is_flag=True, help="Every synced item (the default).")
@pass_cli
def verify(cli_ctx: CliContext, type_name: str | None, ids: tuple[int, ...], failed: bool,
           all_: bool) -> None:
    """Verify items against the primary now, in this process, with a progress bar."""
    _one_selector(ids, failed, all_)
    runtime = open_runtime(cli_ctx.settings.require_secondary())
    try:
        plan = [p for p in select_rows(runtime.engine, type_name, ids=ids, failed=failed)
                if p.state == SyncState.SYNCED]
        verdicts: dict[str, int] = {}
        # No bar for nothing: a 0 % bar reads as stuck.
        with Progress(console=console, disable=not plan) as progress:
            task = progress.add_task("verifying", total=len(plan))
            for row in plan:
                replicator = copy_for(row.type)
                with write_transaction(runtime.engine) as conn:
                    verification_rows.request(conn, replicator.registry_table, [row.id])
                    claimed = verification_rows.claim(conn, replicator.registry_table, [row.id],
                                           runtime.settings.lease_seconds)
                for item in claimed:
                    outcome = verify_one(runtime, replicator, item)
                    verdicts[outcome.verdict] = verdicts.get(outcome.verdict, 0) + 1
                progress.advance(task)
    finally:
        runtime.close()
    summary = ", ".join(f"{count} {verdict}" for verdict, count in sorted(verdicts.items()))
    click.echo(f"verified {len(plan)} item(s): {summary or 'nothing to verify'}")
    sys.exit(1 if verdicts.get(Verdict.MISMATCH) or verdicts.get(Verdict.GAVE_UP) else 0)


@click.command(epilog="Exit status: 0 no orphans, 1 orphans found (also with --delete).")
@click.option("--delete", is_flag=True, help="Delete them (default: only list them).")
@pass_cli
def orphans(cli_ctx: CliContext, delete: bool) -> None:
    """List copies on the mirror that no registry row accounts for; --delete removes them."""
    settings = cli_ctx.settings.require_secondary()
    engine = make_engine(settings.database_url)
    TRACKING.require_current(engine)
    plan = plan_orphans(engine, settings.mirror_root)
    for finding in plan:
        click.echo(f"{'delete' if delete else 'would delete'} {finding.type} {finding.path}")
    if delete:
        click.echo(f"deleted {delete_orphans(settings.mirror_root, plan)} orphan(s)")
    else:
        click.echo(f"{len(plan)} orphan(s); run with --delete to remove them")
    sys.exit(1 if plan else 0)
