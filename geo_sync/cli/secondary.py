"""`geo-sync secondary ...` and `geo-sync worker`: run a secondary site."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geo_sync.cli.context import CliContext, GeoGroup, make_console, pass_cli
from geo_sync.db import make_engine
from geo_sync.errors import InvalidInput
from geo_sync.migrate import TRACKING
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.status import secondary_status
from geo_sync.selection import Selection

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from geo_sync.health.result import CheckResult
    from geo_sync.settings import SecondarySettings

# The daemons (dramatiq, the replicators' transports), `init` and the rich rendering
# are imported where they are used: `geo-sync status --json` imports this module
# (see cli.main.COMMANDS).


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
@click.option("--primary-ca-bundle", type=click.Path(path_type=Path, dir_okay=False),
              help="PEM file of the CA that signed the primary's certificate (default: "
              "public CAs only).")
@click.option("--allow-insecure-primary", is_flag=True,
              help="Allow a plain http:// primary_url to another host (tokens and data "
              "in the clear).")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
@click.option("--skip-primary-check", is_flag=True,
              help="Write the config without first reaching the primary (set up offline).")
def init_command(directory: Path, primary_url: str, name: str, secret_env: str | None,
                 secret_file: Path | None, secret: str | None, database_url: str | None,
                 broker_url: str, queue_name: str, primary_ca_bundle: Path | None,
                 allow_insecure_primary: bool, force: bool,
                 skip_primary_check: bool) -> None:
    """Write a working secondary config and mirror layout, and create the tracking schema.
    The primary is asked first (URL, name and secret verified); nothing is written if
    it cannot be reached or refuses us."""
    from geo_sync.cli.preflight import verify_primary  # noqa: PLC0415
    from geo_sync.secondary.site import init_secondary  # noqa: PLC0415

    secret_value = read_secret(secret_env, secret_file, secret)
    tls: dict[str, object] = {}
    if primary_ca_bundle is not None:
        tls["primary_ca_bundle"] = str(primary_ca_bundle.resolve())
    if allow_insecure_primary:
        tls["allow_insecure_primary"] = True
    if not skip_primary_check:
        verify_primary(primary_url=primary_url, name=name, secret=secret_value, **tls)
    config = init_secondary(directory, primary_url=primary_url, name=name,
                            secret=secret_value, database_url=database_url,
                            broker_url=broker_url, force=force,
                            extra={"queue_name": queue_name, **tls})
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
    from geo_sync.cli.main import daemon_answers  # noqa: PLC0415
    from geo_sync.local_status import StatusSocket  # noqa: PLC0415
    from geo_sync.secondary.daemon import run_secondary  # noqa: PLC0415

    cli_ctx.daemon = True
    config_path, connections = cli_ctx.config_path, ReportConnections(owned=False)
    try:
        run_secondary(cli_ctx.settings.require_secondary(), StatusSocket(
            config_path, lambda command: daemon_answers(config_path, connections, command)))
    finally:
        connections.close()


@secondary.command()
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="Server processes sharing the port [default: secondary.mirror."
              "processes, else one per core, at most 4].")
@pass_cli
def serve(cli_ctx: CliContext, processes: int | None) -> None:
    """Serve the mirror to CI runners: git clone/fetch, artifact and job log downloads,
    never staler than the primary (see [secondary.mirror])."""
    from geo_sync.cli.serving import supervise  # noqa: PLC0415
    from geo_sync.secondary.mirror import server  # noqa: PLC0415

    cli_ctx.daemon = True
    settings = cli_ctx.settings.require_secondary()
    sock = server.prepare(settings)
    count = processes or settings.mirror.processes or server.default_processes()
    if count == 1:
        server.serve_mirror(settings, sock)
    else:
        supervise(cli_ctx.config_path, sock, count, server.serve_child, "secondary serve")


@secondary.command("add-reader")
@click.argument("name")
@pass_cli
def add_reader_command(cli_ctx: CliContext, name: str) -> None:
    """Create a reader of the mirror server and print its token (shown only this once)."""
    from geo_sync.db import write_transaction  # noqa: PLC0415
    from geo_sync.tracking.readers import add_reader  # noqa: PLC0415

    engine = _tracking_engine(cli_ctx)
    try:
        with write_transaction(engine) as conn:
            token = add_reader(conn, name)
    finally:
        engine.dispose()
    click.echo(token)
    click.echo(f"reader {name} added; the token above is shown only now. Runners send it "
               "as Authorization: Bearer, or as the password of HTTP Basic.", err=True)


@secondary.command("remove-reader")
@click.argument("name")
@pass_cli
def remove_reader_command(cli_ctx: CliContext, name: str) -> None:
    """Revoke a reader's token (a running mirror server refuses it within 5 s)."""
    from geo_sync.db import write_transaction  # noqa: PLC0415
    from geo_sync.tracking.readers import remove_reader  # noqa: PLC0415

    engine = _tracking_engine(cli_ctx)
    try:
        with write_transaction(engine) as conn:
            remove_reader(conn, name)
    finally:
        engine.dispose()
    click.echo(f"reader {name} removed")


@secondary.command("readers")
@pass_cli
def readers_command(cli_ctx: CliContext) -> None:
    """List the mirror server's readers (names and when they were added; never tokens)."""
    from geo_sync.tracking.readers import list_readers  # noqa: PLC0415

    engine = _tracking_engine(cli_ctx)
    try:
        with engine.connect() as conn:
            readers = list_readers(conn)
    finally:
        engine.dispose()
    if not readers:
        click.echo("no readers (add one with `geo-sync secondary add-reader NAME`)")
    for reader in readers:
        click.echo(f"{reader.name}\t{reader.created_at.isoformat(timespec='seconds')}")


def _tracking_engine(cli_ctx: CliContext) -> Any:
    engine = make_engine(cli_ctx.settings.require_secondary().database_url)
    TRACKING.require_current(engine)
    return engine


@secondary.command("reselect", epilog="Exit status: 0 applied (or nothing to change), "
                   "1 with --dry-run when the selection would change.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_cli
def reselect_command(cli_ctx: CliContext, dry_run: bool) -> None:
    """Apply the config's [secondary.selection] to this secondary while it runs: newly
    selected items are backfilled from the primary's catalog; items no longer selected
    stop being followed and counted, and their copies stay until `geo-sync orphans
    --delete`."""
    from geo_sync.secondary import reselect  # noqa: PLC0415 - it loads the replicators

    settings = cli_ctx.settings.require_secondary()
    engine = make_engine(settings.database_url)
    try:
        TRACKING.require_current(engine)
        change = reselect.plan(engine, settings.selection.rules())
        if not change.changed:
            click.echo("the selection is already applied; nothing to do")
            return
        for line in change.after.describe() or ["every item (not selective)"]:
            click.echo(f"select {line}")
        for name, count in change.leaving.items():
            if count:
                click.echo(f"{name}: {count} item(s) held now leave the selection")
        if dry_run:
            click.echo("dry run: nothing changed")
            sys.exit(1)
        reselect.apply(engine, change.after)
        click.echo("applied: `secondary run` backfills newly selected items on its next "
                   "pass; copies of items no longer selected stay until "
                   "`geo-sync orphans --delete`")
    finally:
        engine.dispose()


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="First /metrics port of these processes (process i serves it + i); "
                   "default: metrics.worker_port. Give each worker unit on a host its own.")
@pass_cli
def worker(cli_ctx: CliContext, processes: int, threads: int,
           metrics_port: int | None) -> None:
    """Replicate items from the Redis queue (any machine reaching Redis, DB and storage)."""
    from geo_sync.secondary.worker import run_workers  # noqa: PLC0415

    cli_ctx.daemon = True
    cli_ctx.settings.require_secondary()
    run_workers(cli_ctx.config_path, processes, threads, metrics_port)


class ReportConnections:
    """The tracking-DB engine and the client to the primary that status reports use. A
    command makes them for its one report (``owned``: closed after it); `secondary run`
    keeps them across the reports it answers (geo_sync.local_status), so each answer
    reuses compiled statements, pooled connections and one TLS context, and makes new
    ones only when the config file's settings changed."""

    def __init__(self, *, owned: bool) -> None:
        self.owned = owned
        self._lock = threading.Lock()
        self._key: str | None = None
        self._engine: Engine | None = None
        self._client: PrimaryClient | None = None

    def get(self, settings: SecondarySettings) -> tuple[Engine, PrimaryClient]:
        key = settings.model_dump_json()
        with self._lock:
            if self._key != key or self._engine is None or self._client is None:
                self.close()
                self._engine = make_engine(settings.database_url)
                self._client, self._key = PrimaryClient(settings), key
            return self._engine, self._client

    def release(self) -> None:
        """After a report: a command's are closed, a daemon's kept."""
        if self.owned:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._client, self._key = None, None, None


def secondary_status_report(cli_ctx: CliContext, connections: ReportConnections | None = None
                            ) -> tuple[dict[str, Any], list[CheckResult]]:
    """The status report and the checks of its verdict, over one tracking-DB engine and
    one client to the primary (each client builds a TLS context: 40 ms of CPU)."""
    from geo_sync.health.secondary import secondary_checks  # noqa: PLC0415

    settings = cli_ctx.settings.require_secondary()
    connections = connections or ReportConnections(owned=True)
    engine, client = connections.get(settings)
    try:
        TRACKING.require_current(engine)
        report = secondary_status(engine, client, settings.name,
                                  settings.checks.worker_stale_seconds,
                                  settings.checks.lag_window_seconds)
        # An edited selection is followed once `secondary reselect` (or a restart) applies it.
        report["selection"]["config_differs"] = (
            settings.selection.rules().to_json() != Selection.of(
                report["selection"]["include"], report["selection"]["exclude"]).to_json())
        return report, secondary_checks(settings, report["types"], engine=engine,
                                        client=client)
    finally:
        connections.release()


def render_secondary_status(report: dict[str, Any]) -> None:
    """The secondary's status in 80 columns (see secondary_view)."""
    from geo_sync.cli import secondary_view  # noqa: PLC0415

    secondary_view.render(make_console(), report)


@secondary.command("repoint")
@click.argument("url")
@click.option("--secret-env", metavar="VAR", help="A new secret, from environment variable "
              "VAR (default: keep this secondary's secret).")
@click.option("--secret-file", type=click.Path(path_type=Path, dir_okay=False),
              help="A new secret, from this file ('-': standard input).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_context
def repoint_command(ctx: click.Context, url: str, secret_env: str | None,
                    secret_file: Path | None, as_json: bool) -> None:
    """Follow a new primary at URL (after a promotion): keep every copy whose checksum
    matches its catalog, copy only what differs. Stop `secondary run` first."""
    from geo_sync.cli.failover import repoint  # noqa: PLC0415

    ctx.forward(repoint)
