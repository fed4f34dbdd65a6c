"""`geo-sync primary ...`: set up, run and feed the primary site."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import uvicorn
from prometheus_client import REGISTRY
from rich.table import Table

from geo_sync.auth import issue_token
from geo_sync.cli.context import CliContext, GeoGroup, make_console, pass_cli
from geo_sync.cli.verdict_view import render_verdict
from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput, NotFound
from geo_sync.metrics import serve_metrics
from geo_sync.migrate import PRIMARY
from geo_sync.paths import resolve_inside
from geo_sync.primary import hooks, secondaries
from geo_sync.primary.api import CREDENTIAL_CACHE_SECONDS, GeoApi, create_app
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.retention import prune
from geo_sync.primary.scan import apply_plan, plan_scan
from geo_sync.primary.site import init_primary, open_primary
from replicators.registry import REPLICATORS, replicator_for
from replicators.repository import RepositoryReplicator

console = make_console()


@click.group(cls=GeoGroup)
def primary() -> None:
    """Run and feed the primary site."""


@primary.command("init")
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True,
              help="Directory for the config, the embedded database and storage.")
@click.option("--database-url", help="postgresql+psycopg://... (default: SQLite in --dir).")
@click.option("--listen", default="127.0.0.1:8650", show_default=True,
              help="HOST:PORT of the Geo API.")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def init_command(directory: Path, database_url: str | None, listen: str, force: bool) -> None:
    """Write a working primary config and storage layout, and create the schema."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"--listen must be HOST:PORT, got {listen!r}")
    config = init_primary(directory, database_url=database_url, listen_host=host,
                          listen_port=int(port), force=force)
    click.echo(f"wrote {config}")
    click.echo(f"next: geo-sync --config {config} primary add-secondary NAME")


@primary.command()
@pass_cli
def migrate(cli_ctx: CliContext) -> None:
    """Upgrade the primary database schema to this version of geo-sync."""
    before, after = PRIMARY.upgrade_url(cli_ctx.settings.require_primary().database_url)
    click.echo(f"primary schema: {before or 'empty'} -> {after}")


@primary.command()
@pass_cli
def serve(cli_ctx: CliContext) -> None:
    """Serve the Geo API (events, catalog, blobs, git) and prune the event log."""
    settings, engine = open_primary(cli_ctx.settings)
    app = create_app(settings, engine)
    if settings.metrics.port:
        REGISTRY.register(app.state.api.collector)
        serve_metrics(settings.metrics.host, settings.metrics.port, "primary serve")
    click.echo(f"Geo API on http://{settings.listen_host}:{settings.listen_port}/api/geo/v1",
               err=True)
    uvicorn.Server(
        uvicorn.Config(app, host=settings.listen_host, port=settings.listen_port,
                       log_config=None, access_log=False, timeout_graceful_shutdown=5)
    ).run()


@primary.command("publish")
@click.argument("type_name", metavar="TYPE", type=click.Choice(sorted(REPLICATORS)))
@click.argument("event")
@click.option("--path", required=True, help="Path relative to the type's storage root.")
@click.option("--record-id", help="The CI system's id for the item (default: its path).")
@click.option("--size", type=int, help="Size in bytes (default: measured on disk).")
@click.option("--checksum", help="sha256 hex (default: computed on disk).")
@click.option("--old-path", help="For renamed: where the item was.")
@click.option("--no-inspect", is_flag=True, help="Do not measure the item on disk.")
@pass_cli
def publish_command(cli_ctx: CliContext, type_name: str, event: str, path: str,
                    record_id: str | None, size: int | None, checksum: str | None,
                    old_path: str | None, no_inspect: bool) -> None:
    """Publish one change (for scripts); prints the event id."""
    settings, engine = open_primary(cli_ctx.settings)
    replicator = replicator_for(type_name)
    replicator.validate_event(event)
    replicator.validate_path(path)
    if event != "deleted" and not no_inspect and (size is None or checksum is None):
        full = resolve_inside(settings.storage_root / replicator.storage_dir, path)
        if full.exists():
            found = replicator.describe(full, path)
            size = found.size if size is None else size
            checksum = found.checksum if checksum is None else checksum
    change = Change(type_name, event, path, record_id=record_id, size=size, checksum=checksum,
                    old_path=old_path)
    with write_transaction(engine) as conn:
        click.echo(publish(conn, change))


@primary.command()
@click.option("--dry-run", is_flag=True, help="Print the changes without publishing them.")
@pass_cli
def scan(cli_ctx: CliContext, dry_run: bool) -> None:
    """Compare storage with the catalog and publish what differs."""
    settings, engine = open_primary(cli_ctx.settings)
    plan = plan_scan(engine, settings.storage_root)
    for change in plan.changes:
        click.echo(f"{'would publish' if dry_run else 'publish'} {change.replicable_type} "
                   f"{change.event} {change.path}")
    for skipped in plan.skipped:
        click.echo(f"skipped {skipped}", err=True)
    if not dry_run:
        apply_plan(engine, plan)
    click.echo(f"{len(plan.changes)} change(s){' planned' if dry_run else ' published'}, "
               f"{len(plan.skipped)} skipped")


@primary.command("install-hooks")
@click.argument("repos_root", required=False, type=click.Path(path_type=Path, file_okay=False))
@pass_cli
def install_hooks_command(cli_ctx: CliContext, repos_root: Path | None) -> None:
    """Install post-receive hooks that publish every push (default: the storage root).

    The hook records the push in a spool that `primary serve` publishes from."""
    settings = cli_ctx.settings.require_primary()
    root = repos_root or settings.storage_root / RepositoryReplicator.storage_dir
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    spool = hooks.spool_dir(settings.storage_root)
    report = hooks.install_hooks(root, spool)
    click.echo(f"installed the hook in {len(report.installed)} repositories; pushes are "
               f"recorded in {spool} and published by `geo-sync primary serve`")
    for relpath in report.foreign:
        click.echo(f"left {relpath} alone: it has its own post-receive hook; run "
                   f"{report.template / 'hooks' / 'post-receive'} from it", err=True)
    click.echo(f"for repositories created later: git config --system init.templateDir "
               f"{report.template}")


@primary.command("hook-post-receive", hidden=True)
@click.argument("repository", type=click.Path(path_type=Path))
@pass_cli
def hook_post_receive(cli_ctx: CliContext, repository: Path) -> None:
    """Called by the installed hook with the pushed repository's directory."""
    settings, engine = open_primary(cli_ctx.settings)
    click.echo(hooks.publish_push(
        engine, settings.storage_root / RepositoryReplicator.storage_dir, repository))


@primary.command("add-secondary")
@click.argument("name")
@click.option("--secret-env", metavar="VAR",
              help="Use the secret in environment variable VAR (e.g. from a vault) "
              "instead of generating one.")
@pass_cli
def add_secondary(cli_ctx: CliContext, name: str, secret_env: str | None) -> None:
    """Register a secondary and print its secret (shown only this once)."""
    given = None
    if secret_env:
        given = os.environ.get(secret_env)
        if not given:
            raise InvalidInput(f"environment variable {secret_env} is not set or empty")
    _, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        secret = secondaries.add_secondary(conn, name, given)
    if given:
        click.echo(f"registered {name} with the secret from ${secret_env}")
        return
    click.echo(secret)
    click.echo(f"registered {name}; the secret above is shown only once: give it to "
               f"`geo-sync secondary init --secret`", err=True)


def _set_enabled(cli_ctx: CliContext, name: str, enabled: bool) -> None:
    _, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        secondaries.set_enabled(conn, name, enabled)
    click.echo(f"{name} {'enabled' if enabled else 'disabled'}"
               + ("" if enabled else f" (a running `primary serve` refuses it within "
                  f"{CREDENTIAL_CACHE_SECONDS:g} s)"))


@primary.command("enable-secondary")
@click.argument("name")
@pass_cli
def enable_secondary(cli_ctx: CliContext, name: str) -> None:
    """Let a disabled secondary use the Geo API again."""
    _set_enabled(cli_ctx, name, True)


@primary.command("disable-secondary")
@click.argument("name")
@pass_cli
def disable_secondary(cli_ctx: CliContext, name: str) -> None:
    """Refuse every request from a secondary (within a couple of seconds)."""
    _set_enabled(cli_ctx, name, False)


@primary.command()
@click.argument("name")
@click.option("--ttl", default=60, show_default=True, help="Seconds until the token expires.")
@pass_cli
def token(cli_ctx: CliContext, name: str, ttl: int) -> None:
    """Print a short-lived token of a secondary, for debugging with curl."""
    settings, engine = open_primary(cli_ctx.settings)
    if not 0 < ttl <= settings.max_token_ttl_seconds:
        raise InvalidInput(f"--ttl must be between 1 and {settings.max_token_ttl_seconds}")
    with engine.connect() as conn:
        credential = secondaries.credential(conn, name)
    if credential is None:
        raise NotFound(f"no secondary named {name!r}",
                       hint="register it with `geo-sync primary add-secondary NAME`")
    click.echo(issue_token(name, credential.secret, ttl=ttl))


@primary.command("prune")
@pass_cli
def prune_command(cli_ctx: CliContext) -> None:
    """Delete events every healthy secondary has acknowledged (serve does this too)."""
    settings, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        result = prune(conn, settings.event_retention_seconds)
    click.echo(f"pruned {result.deleted} event(s)")
    for name in result.cut_off:
        click.echo(f"secondary {name} fell behind the retention limit and must backfill",
                   err=True)


def primary_status_report(cli_ctx: CliContext) -> dict[str, Any]:
    settings, engine = open_primary(cli_ctx.settings)
    return GeoApi(settings, engine).status_report()


def render_primary_status(report: dict[str, Any]) -> None:
    """The primary's status as tables, after its verdict."""
    render_verdict(console, report)
    catalog = Table(title="primary catalog")
    catalog.add_column("type")
    catalog.add_column("items", justify="right")
    for name, count in report["catalog"].items():
        catalog.add_row(name, str(count))
    console.print(catalog)
    console.print(f"event log: {report['events_retained']} retained, last id "
                  f"{report['last_event_id']}")
    peers = Table(title="secondaries")
    for column in ("name", "enabled", "healthy", "pending events", "last seen", "note"):
        peers.add_column(column)
    for peer in report["secondaries"]:
        note = ""
        if peer["backfill_required"]:
            note = "fell behind retention: must backfill"
        elif not peer["healthy"]:
            note = "silent past retention: no longer holds pruning"
        peers.add_row(peer["name"], str(peer["enabled"]), str(peer["healthy"]),
                      str(peer["pending_events"]), peer["last_seen_at"] or "never", note)
    console.print(peers)
