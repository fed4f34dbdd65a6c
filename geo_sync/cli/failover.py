"""`geo-sync promote`, `geo-sync drill` and `geo-sync secondary repoint`: disaster
recovery on a secondary (geo_sync.failover does the work)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from geo_sync.cli.context import CliContext, pass_cli
from geo_sync.errors import GeoSyncError, InvalidInput
from geo_sync.wire import API_PREFIX

#: How long `promote --serve` waits for the new primary's Geo API to answer.
SERVE_WAIT_SECONDS = 60.0


def _say(as_json: bool) -> Any:
    return (lambda line: click.echo(line, err=True)) if as_json else click.echo


def lost_lines(rpo: dict[str, Any]) -> list[str]:
    last = rpo.get("last_event_applied") or {}
    lines = [f"last event applied: {last.get('id')} at {last.get('at')}",
             f"events published but not applied: "
             f"{'unknown' if rpo.get('events_not_applied') is None else rpo['events_not_applied']}"
             + (" or more" if rpo.get("events_not_applied_at_least") else "")]
    for name, gap in (rpo.get("types") or {}).items():
        if any(gap[key] for key in ("pending", "failed", "unverified", "deletes_not_applied")):
            lines.append(f"{name}: {gap['pending']} pending, {gap['failed']} failed, "
                         f"{gap['unverified']} unverified, {gap['deletes_not_applied']} "
                         f"deletes not applied ({gap['bytes']} bytes, oldest change "
                         f"{gap['oldest_change_at']})")
    for item in rpo.get("items_listed") or []:
        lines.append(f"  may be lost: {item['type']} {item['path']} ({item['state']}"
                     + (f": {item['error']}" if item.get("error") else "") + ")")
    return lines


def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    """Start `primary serve` on the new config and wait until its Geo API answers."""
    # The geo-sync of this installation (its virtualenv), not whatever PATH finds.
    proc = subprocess.Popen([str(Path(sys.executable).parent / "geo-sync"), "--config",
                             str(config), "primary", "serve"])
    deadline = time.monotonic() + SERVE_WAIT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GeoSyncError(f"`primary serve` exited with {proc.returncode}",
                               hint=f"run `geo-sync --config {config} primary serve` to see why")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{API_PREFIX}/openapi.json",
                         timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise GeoSyncError(f"the new primary did not answer within {SERVE_WAIT_SECONDS:g} s",
                       hint=f"run `geo-sync --config {config} primary serve` to see why")


@click.command()
@click.option("--force", is_flag=True, help="Unplanned: the primary is lost; promote with "
              "what this site has and list what may be lost.")
@click.option("--serve", is_flag=True, help="Then serve the Geo API here (in the foreground).")
@click.option("--listen", default="127.0.0.1:8650", show_default=True,
              help="HOST:PORT the new primary's Geo API listens on.")
@click.option("--url", help="The URL other sites reach this one at [default: "
              "http://LISTEN]; the old primary names it.")
@click.option("--database-url", help="Database of the new primary (empty; default: SQLite "
              "next to the config).")
@click.option("--drain-timeout", type=click.FloatRange(1, 86400), default=600.0,
              show_default=True, help="Seconds to wait for RPO 0 (planned).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_cli
def promote(cli_ctx: CliContext, force: bool, serve: bool, listen: str, url: str | None,
            database_url: str | None, drain_timeout: float, as_json: bool) -> None:
    """Make this secondary the primary: planned (RPO 0, the old primary fenced) or
    --force (unplanned).

    Planned: maintenance on at the primary, drain to RPO 0, fence it, build the catalog
    from the tracking DB, write the primary's config. --force: promote with what is
    here and list what may be lost."""
    from geo_sync.failover import promote as promotion  # noqa: PLC0415

    started = time.monotonic()
    settings = cli_ctx.settings.require_secondary()
    host, port = promotion.parse_listen(listen)
    url = (url or f"http://{host}:{port}").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"--url must be http(s)://..., got {url!r}")
    report = promotion.promote(settings, cli_ctx.config_path.parent, force=force, url=url,
                 listen=(host, port), database_url=database_url,
                 drain_timeout=drain_timeout, say=_say(as_json))
    proc = _serve(report.config, port) if serve else None
    rto = round(time.monotonic() - started, 3)
    result = {**report.to_json(), "rto_seconds": rto, "serving": proc is not None}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        rpo = report.rpo
        click.echo(f"promoted to primary at epoch {report.epoch} "
                   f"({'planned' if report.planned else 'unplanned, --force'})")
        click.echo(f"RPO: {'0 (nothing lost)' if rpo['zero'] else 'items may be lost'}; "
                   f"RTO: {rto} s ({', '.join(f'{k} {v} s' for k, v in report.seconds.items())})")
        if not rpo["zero"]:
            for line in lost_lines(rpo):
                click.echo(line)
        catalog = report.catalog
        click.echo(f"catalog: {sum(catalog.items.values())} items, {catalog.bytes} bytes; "
                   f"checksums to take: {sum(catalog.without_checksum.values())}")
        click.echo(f"config: {report.config}")
        for note in report.notes:
            click.echo(f"note: {note}")
        for name in report.secondaries:
            click.echo(f"register {name} here: geo-sync --config {report.config} primary "
                       f"add-secondary {name} --secret-env VAR (its secret, or a new one), "
                       f"then on {name}: geo-sync secondary repoint {url}")
        if proc is None:
            click.echo(f"next: geo-sync --config {report.config} primary serve")
    if proc is not None:
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        sys.exit(proc.wait())


@click.command()
@click.argument("url")
@click.option("--secret-env", metavar="VAR", help="A new secret, from environment variable "
              "VAR (default: keep this secondary's secret).")
@click.option("--secret-file", type=click.Path(path_type=Path, dir_okay=False),
              help="A new secret, from this file ('-': standard input).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_cli
def repoint(cli_ctx: CliContext, url: str, secret_env: str | None, secret_file: Path | None,
            as_json: bool) -> None:
    """Follow a new primary at URL (after a promotion): keep every copy whose checksum
    matches its catalog, copy only what differs. Stop `secondary run` first."""
    from geo_sync.cli.secondary import read_secret  # noqa: PLC0415
    from geo_sync.failover.repoint import repoint as run  # noqa: PLC0415

    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"URL must be http(s)://..., got {url!r}")
    secret = read_secret(secret_env, secret_file, None) if (secret_env or secret_file) else None
    result = run(cli_ctx.settings.require_secondary(), cli_ctx.config_path, url, secret)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"following {result.url} at epoch {result.epoch}: {result.catalog_items} "
               f"catalog items; kept {result.kept_items} copies ({result.kept_bytes} bytes), "
               f"to copy {result.to_copy_items} ({result.to_copy_bytes} bytes)")
    click.echo("next: start `geo-sync secondary run` (and restart this site's "
               "`geo-sync worker` processes)")
