"""`geo-sync primary ...`: set up, run and feed the primary site."""

from __future__ import annotations

import errno
import hmac
import os
import socket
import stat
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from sqlalchemy import Engine

from geo_sync.auth import issue_token
from geo_sync.cli.context import CliContext, GeoGroup, make_console, pass_cli
from geo_sync.cli.serving import default_processes, serve_on, supervise
from geo_sync.cli.verdict_view import render_verdict
from geo_sync.db import write_transaction
from geo_sync.errors import GeoSyncError, InvalidInput, NotFound
from geo_sync.logging import get_logger
from geo_sync.migrate import PRIMARY
from geo_sync.paths import resolve_inside
from geo_sync.primary import hooks, secondaries, site_state
from geo_sync.primary.credentials import CREDENTIAL_CACHE_SECONDS
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.retention import prune
from geo_sync.primary.scan import apply_plan, plan_scan
from geo_sync.primary.site import init_primary, open_primary
from geo_sync.primary.status import primary_status
from geo_sync.settings import PrimarySettings
from geo_sync.tls import check_server_pair
from replicators.base import Original
from replicators.repository import is_bare_repository
from replicators.type_map import REPLICATORS, git_original, original_for

console = make_console()
log = get_logger("cli")


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket for the Geo API, or an error that says who to ask about the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections whose socket
    # says TCP, and without it a response's header and body writes wait ~40 ms for the
    # client's delayed ACK (Nagle) on every keep-alive request after the first.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            hint = (f"another process listens on port {port} (`ss -ltnp 'sport = :{port}'` "
                    "names it): stop it, or set primary.listen_port to a free port")
        elif exc.errno == errno.EACCES:
            hint = "ports below 1024 need privileges: use a port above 1024"
        else:
            hint = "set primary.listen_host to an address of this machine (or 0.0.0.0)"
        raise GeoSyncError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint=hint) from None
    return sock


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
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="Server processes sharing the port [default: one per core, at most "
              "4]; the periodic jobs run in the first.")
@pass_cli
def serve(cli_ctx: CliContext, processes: int | None) -> None:
    """Serve the Geo API (events, catalog, blobs, git) and prune the event log."""
    cli_ctx.daemon = True
    settings, engine = open_primary(cli_ctx.settings)  # the schema is checked here, once
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        # Before binding, and in this process: a bad pair is one line naming the file,
        # not a traceback from each serving child.
        check_server_pair(settings.tls_cert_file, settings.tls_key_file)
    # Bind before anything says "started": a busy port is one line with a hint, not
    # uvicorn's raw errno after a startup message.
    try:
        sock = listen_socket(settings.listen_host, settings.listen_port)
        _begin_serving(settings, engine)
    finally:
        engine.dispose()
    count = processes or default_processes()
    if count == 1:
        serve_on(cli_ctx.settings, sock)
    else:
        supervise(cli_ctx.config_path, sock, count)


def _begin_serving(settings: PrimarySettings, engine: Engine) -> None:
    """Note that we serve; after an unclean shutdown, hold writes until the epoch is
    confirmed (geo_sync.primary.site_state), saying so in the log."""
    with write_transaction(engine) as conn:
        unclean, state = site_state.begin_serving(conn)
    site_state.write_marker(settings.storage_root, state)
    if state.awaiting_confirmation:
        log.warning("unclean_shutdown", epoch=state.epoch,
                    waiting_for=list(state.awaiting_confirmation),
                    message=state.unconfirmed_message(), hint=site_state.UNCONFIRMED_HINT)
    elif unclean:
        log.warning("unclean_shutdown", epoch=state.epoch,
                    message="the last `primary serve` did not stop cleanly; no secondary "
                    "was following this site, so there is nobody to confirm its epoch with: "
                    "taking writes")


@primary.command("publish")
@click.argument("type_name", metavar="TYPE", type=click.Choice(sorted(REPLICATORS)))
@click.argument("event")
@click.option("--path", required=True, help="Path relative to the type's storage root.")
@click.option("--record-id", help="The CI system's id for the item (default: its path).")
@click.option("--size", type=int, help="Size in bytes (default: measured on disk).")
@click.option("--checksum", help="sha256 hex (default: computed on disk).")
@click.option("--old-path", help="For renamed: where the item was.")
@click.option("--no-inspect", is_flag=True,
              help="Do not measure the item on disk, nor require it to exist there yet.")
@pass_cli
def publish_command(cli_ctx: CliContext, type_name: str, event: str, path: str,
                    record_id: str | None, size: int | None, checksum: str | None,
                    old_path: str | None, no_inspect: bool) -> None:
    """Publish one change (for scripts); prints the event id."""
    settings, engine = open_primary(cli_ctx.settings)
    replicator = original_for(type_name)
    replicator.validate_event(event)
    replicator.validate_path(path)
    # Always, --no-inspect included: a path that leads out of the storage root through a
    # symlink is refused before anything is published.
    full = resolve_inside(settings.storage_root / replicator.storage_dir, path)
    if event != "deleted" and not no_inspect:
        _require_item(replicator, full, path)
        if size is None or checksum is None:
            found = replicator.describe(full, path)
            size = found.size if size is None else size
            checksum = found.checksum if checksum is None else checksum
    change = Change(type_name, event, path, record_id=record_id, size=size, checksum=checksum,
                    old_path=old_path)
    with write_transaction(engine) as conn:
        click.echo(publish(conn, change))


def _require_item(replicator: type[Original], full: Path, path: str) -> None:
    """The item must be on disk as its type stores it. Checked with stat, before any
    read: opening a FIFO or a device to hash it would block forever."""
    hint = "create it first, or publish with --no-inspect (and --size/--checksum)"
    try:
        mode = full.stat().st_mode
    except FileNotFoundError:
        raise InvalidInput(f"--path {path} does not exist under {full.parent}",
                           hint=hint) from None
    except OSError as exc:
        raise InvalidInput(f"--path {path} cannot be read: {exc.strerror}", hint=hint) from None
    if replicator.transport == "git":
        if not (stat.S_ISDIR(mode) and is_bare_repository(full)):
            raise InvalidInput(f"--path {path} is not a bare git repository", hint=hint)
    elif not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise InvalidInput(f"--path {path} is {kind}; a {replicator.name} is one file",
                           hint=hint)


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
    root = repos_root or settings.storage_root / git_original().storage_dir
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory")
    spool = hooks.spool_dir(settings.storage_root)
    report = hooks.install_hooks(root, spool)
    click.echo(f"installed the hook in {len(report.installed)} repositories; pushes are "
               f"recorded in {spool} and published by `geo-sync primary serve`")
    for relpath in report.foreign:
        click.echo(f"left {relpath} alone: it has its own post-receive or pre-receive hook; run "
                   f"the hooks in {report.template / 'hooks'} from it", err=True)
    click.echo(f"for repositories created later: git config --system init.templateDir "
               f"{report.template}")


@primary.command("hook-post-receive", hidden=True)
@click.argument("pushed", metavar="REPO_DIR", type=click.Path(path_type=Path))
@pass_cli
def hook_post_receive(cli_ctx: CliContext, pushed: Path) -> None:
    """Called by the installed hook with the pushed repository's directory."""
    settings, engine = open_primary(cli_ctx.settings)
    click.echo(hooks.publish_push(
        engine, settings.storage_root / git_original().storage_dir, pushed))


@primary.command("add-secondary")
@click.argument("name")
@click.option("--secret-env", metavar="VAR",
              help="Use the secret in environment variable VAR (e.g. from a vault) "
              "instead of generating one.")
@click.option("--exist-ok", is_flag=True,
              help="Succeed without change if NAME is already registered (with the same "
              "secret, when --secret-env is given): for provisioning scripts.")
@pass_cli
def add_secondary(cli_ctx: CliContext, name: str, secret_env: str | None,
                  exist_ok: bool) -> None:
    """Register a secondary and print its secret (shown only this once)."""
    given = None
    if secret_env:
        given = os.environ.get(secret_env)
        if not given:
            raise InvalidInput(f"environment variable {secret_env} is not set or empty")
    _, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        existing = secondaries.credential(conn, name)
        if existing is not None and exist_ok:
            if given is not None and not hmac.compare_digest(existing.secret, given):
                raise InvalidInput(
                    f"secondary {name!r} is already registered with a different secret",
                    hint=f"give ${secret_env} the secret it was registered with, or register "
                    "it under another name")
            click.echo(f"{name} is already registered; nothing changed")
            return
        secret = secondaries.add_secondary(conn, name, given)
    if given:
        click.echo(f"registered {name} with the secret from ${secret_env}")
        return
    click.echo(secret)
    click.echo(f"registered {name}; the secret above is shown only once: give it to "
               f"`geo-sync secondary init --secret-env VAR` (or --secret-file)", err=True)


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


@primary.command("remove-secondary")
@click.argument("name")
@pass_cli
def remove_secondary(cli_ctx: CliContext, name: str) -> None:
    """Forget a secondary: refuse its requests and stop keeping events for it."""
    _, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        secondaries.remove_secondary(conn, name)
    click.echo(f"removed {name}: a running `primary serve` refuses it within "
               f"{CREDENTIAL_CACHE_SECONDS:g} s and no longer keeps events for it. Its "
               f"mirror is untouched; to bring it back, `add-secondary` it and set it up "
               f"again with `secondary init` (a fresh tracking database backfills)")


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
    return primary_status(settings, engine)


_PEER_NOTES = {
    "must_backfill": "fell behind retention: must backfill",
    "silent": "silent past retention: no longer holds pruning",
    "never_connected": "never connected: start `geo-sync secondary run` there and check its "
                       "primary_url, name and secret",
    "disabled": "disabled: `geo-sync primary enable-secondary` lets it in again",
}


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
    console.print(describe_site(report.get("site") or {}))
    peers = Table(title="secondaries")
    for column in ("name", "enabled", "healthy", "pending events", "last seen", "note"):
        peers.add_column(column)
    for peer in report["secondaries"]:
        peers.add_row(peer["name"], "yes" if peer["enabled"] else "no",
                      "yes" if peer["healthy"] else "no", str(peer["pending_events"]),
                      peer["last_seen_at"] or "never", _PEER_NOTES.get(peer["state"], ""))
    console.print(peers)


def describe_site(site: dict[str, Any]) -> str:
    """The epoch, and maintenance mode or fencing if in force (one line), then any old
    primary this site has not fenced yet (a line each)."""
    line = f"epoch {site.get('epoch', '?')}"
    for old in site.get("unfenced_old_primaries") or []:
        line = (f"old primary not yet fenced: {old['url']} ({old['attempts']} attempts, "
                f"last: {old['last_error'] or 'none yet'}); `primary serve` keeps "
                f"trying\n{line}")
    if site.get("demoted"):
        return (f"{line}: DEMOTED, takes no writes; the primary is now "
                f"{site.get('new_primary_url') or 'another site'}")
    if site.get("awaiting_confirmation"):
        return (f"{line}: UNCONFIRMED since {site.get('unconfirmed_since')}, publishes and "
                f"pushes refused ({site_state.UNCONFIRMED_REASON} from secondary "
                f"{', '.join(site['awaiting_confirmation'])}: {site_state.UNCONFIRMED_HINT})")
    if site.get("maintenance"):
        return (f"{line}: MAINTENANCE since {site.get('maintenance_since')}, publishes and "
                f"pushes refused ({site.get('maintenance_reason') or 'no reason given'})")
    return f"{line}: taking writes"


@primary.command()
@click.argument("action", type=click.Choice(["on", "off", "status"]), default="status")
@click.option("--reason", help="Why (shown to refused publishers and pushes).")
@pass_cli
def maintenance(cli_ctx: CliContext, action: str, reason: str | None) -> None:
    """Maintenance mode: while on, publishing (every path) and git pushes are refused;
    the Geo API keeps serving reads so secondaries can drain."""
    settings, engine = open_primary(cli_ctx.settings)
    if action == "status":
        with engine.connect() as conn:
            state = site_state.read_state(conn)
    else:
        with write_transaction(engine) as conn:
            state = site_state.read_state(conn)
            if state.demoted:
                raise GeoSyncError("this site was demoted: it takes no writes whether in "
                                   "maintenance or not",
                                   hint="`geo-sync primary rejoin` makes it a secondary of "
                                   f"{state.new_primary_url or 'the new primary'}")
            waiting = state.awaiting_confirmation
            state = site_state.set_maintenance(conn, action == "on", reason)
            if action == "off" and waiting:
                # The operator knows no other site was promoted: the epoch stands.
                state = site_state.confirm_epoch(conn, None)
        site_state.write_marker(settings.storage_root, state)
        if action == "off" and waiting:
            log.warning("epoch_confirmed", by="operator", epoch=state.epoch,
                        were_waiting_for=list(waiting))
            click.echo(f"epoch {state.epoch} confirmed by the operator (it was waiting for "
                       f"{', '.join(waiting)} after an unclean shutdown)")
    click.echo(describe_site(state.to_json()))


@primary.command()
@click.option("--new-primary", "new_primary", required=True, metavar="URL",
              help="The promoted site's Geo API URL, named to whoever still asks here.")
@pass_cli
def demote(cli_ctx: CliContext, new_primary: str) -> None:
    """Fence this site after another was promoted: it refuses publishes and pushes for
    good and tells secondaries where the new primary is."""
    settings, engine = open_primary(cli_ctx.settings)
    with write_transaction(engine) as conn:
        state = site_state.demote(conn, new_primary)
    site_state.write_marker(settings.storage_root, state)
    click.echo(describe_site(state.to_json()))
    click.echo("next: `geo-sync primary rejoin` makes this site a secondary of the new "
               "primary", err=True)


@primary.command()
@click.option("--primary-url", required=True, help="The new primary's URL.")
@click.option("--name", required=True, help="This site's name, as registered on the new "
              "primary (`primary add-secondary NAME` there).")
@click.option("--secret-env", metavar="VAR", help="The secret, from environment variable VAR.")
@click.option("--secret-file", type=click.Path(path_type=Path, dir_okay=False),
              help="The secret, from this file ('-': standard input).")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="Where the secondary's config goes [default: secondary/ next to this "
              "config].")
@click.option("--database-url", help="Tracking DB, empty (default: SQLite in --dir).")
@click.option("--broker-url", default="embedded", show_default=True)
@click.option("--queue-name", default="geo_sync", show_default=True)
@pass_cli
def rejoin(cli_ctx: CliContext, primary_url: str, name: str, secret_env: str | None,
           secret_file: Path | None, directory: Path | None, database_url: str | None,
           broker_url: str, queue_name: str) -> None:
    """Make this demoted site a secondary of the new primary, keeping its storage as the
    mirror: copies whose checksum matches the new catalog are not copied again."""
    from geo_sync.cli.preflight import verify_primary  # noqa: PLC0415
    from geo_sync.cli.secondary import read_secret  # noqa: PLC0415
    from geo_sync.failover.rejoin import rejoin as run  # noqa: PLC0415

    settings = cli_ctx.settings.require_primary()
    secret = read_secret(secret_env, secret_file, None)
    verify_primary(primary_url=primary_url, name=name, secret=secret)
    target = directory or cli_ctx.config_path.parent / "secondary"
    config, kept = run(settings, target, primary_url=primary_url, name=name, secret=secret,
                       database_url=database_url, broker_url=broker_url,
                       queue_name=queue_name)
    click.echo(f"wrote {config}: a secondary of {primary_url} mirroring "
               f"{settings.storage_root}; {kept} copies kept for its first backfill to check")
    click.echo(f"next: stop `primary serve` here, then geo-sync --config {config} "
               "secondary run")
