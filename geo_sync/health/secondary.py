"""`geo-sync check` on a secondary: one result per check, each with a hint unless OK."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine, select

from geo_sync.db import make_engine, utcnow
from geo_sync.health.result import (
    CheckResult,
    Level,
    by_threshold,
    ok,
    run_check,
    schema_check,
)
from geo_sync.migrate import TRACKING
from geo_sync.paths import TEMP_PREFIX
from geo_sync.secondary import heartbeat
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.leader import CURSOR_LEASE
from geo_sync.secondary.probe import PrimaryView, disk_space, lag, probe_primary, queue_depth
from geo_sync.settings import SecondarySettings
from geo_sync.tls import is_loopback_url
from geo_sync.tracking import sync_rows
from geo_sync.tracking.models import CursorRow, Lease
from geo_sync.tracking.states import SyncState
from replicators.type_names import registry_tables


def primary_checks(settings: SecondarySettings, view: PrimaryView) -> list[CheckResult]:
    """The checks that concern only the primary: `secondary init` runs these first."""

    def connection() -> CheckResult:
        name = "primary reachable"
        if not view.reachable:
            return CheckResult(name, Level.CRITICAL, f"{settings.primary_url}: {view.error}",
                               view.hint or "check that the primary is up and reachable")
        if not settings.primary_url.startswith("https://") and not is_loopback_url(
                settings.primary_url):
            return CheckResult(name, Level.WARNING,
                               f"{settings.primary_url} is plain HTTP over the network "
                               "(allow_insecure_primary = true)",
                               "serve the primary over HTTPS (tls_cert_file, tls_key_file) "
                               "and use an https:// URL")
        scheme = "TLS" if settings.primary_url.startswith("https://") else "loopback"
        return ok(name, f"{settings.primary_url} answers ({scheme})")

    def credential() -> CheckResult:
        name = "credential accepted"
        if not view.reachable:
            return CheckResult(name, Level.UNKNOWN, "primary unreachable: not tried",
                               "fix the connection to the primary first")
        if view.refused:
            return CheckResult(name, Level.CRITICAL,
                               f"the primary refused our credential as {settings.name!r}: "
                               f"{view.error}", view.hint or "check name and secret")
        if view.report is None:
            return CheckResult(name, Level.CRITICAL, view.error or "no answer",
                               view.hint or "check primary_url")
        if not view.mine(settings.name):
            return CheckResult(name, Level.CRITICAL,
                               f"the primary does not list {settings.name!r}",
                               "register it with `geo-sync primary add-secondary`")
        return ok(name, f"authenticated as {settings.name!r}")

    def clock() -> CheckResult:
        name = "clock skew"
        if view.skew_seconds is None:
            return CheckResult(name, Level.UNKNOWN, "the primary's clock was not read",
                               "fix the connection to the primary first")
        checks = settings.checks
        skew = view.skew_seconds
        level = by_threshold(abs(skew), checks.clock_skew_warning_seconds,
                             checks.clock_skew_critical_seconds)
        message = f"primary's clock is {skew:+.1f} s from ours"
        return CheckResult(name, level, message,
                           "run NTP (chrony, systemd-timesyncd) on both sites: tokens are "
                           "refused past the primary's leeway" if level else "")

    return [run_check(n, f) for n, f in (("primary reachable", connection),
                                         ("credential accepted", credential),
                                         ("clock skew", clock))]


@dataclass
class _Site:
    settings: SecondarySettings
    engine: Engine
    view: PrimaryView
    #: Registry counts per type, if the caller already has them (status does).
    counts: dict[str, dict[str, int]] | None = None


def _database(site: _Site) -> CheckResult:
    return schema_check("tracking database", TRACKING, site.engine,
                        "geo-sync secondary migrate")


def _broker(site: _Site) -> CheckResult:
    if site.settings.broker_url == "embedded":
        return ok("broker", "embedded (workers run inside `secondary run`)")
    try:
        depth = queue_depth(site.settings)
    except Exception as exc:
        return CheckResult("broker", Level.CRITICAL, f"Redis unreachable: {exc}",
                           "check that Redis runs and broker_url is right")
    return ok("broker", f"Redis reachable, {depth} message(s) waiting")


def _workers(site: _Site) -> CheckResult:
    name = "workers"
    stale = site.settings.checks.worker_stale_seconds
    with site.engine.connect() as conn:
        live = heartbeat.live_workers(conn, stale)
        tables = list(registry_tables().values())
        backlog = sum(conn.execute(select(t.id).where(
            t.state == SyncState.PENDING, t.enqueued_at.is_not(None)).limit(1)
        ).first() is not None for t in tables)
    what = ("`geo-sync secondary run` (systemd: geo-sync-secondary)"
            if site.settings.broker_url == "embedded"
            else "`geo-sync worker` (systemd: geo-sync-worker@N)")
    if not live:
        return CheckResult(name, Level.CRITICAL, f"no worker beat in the last {stale:.0f} s",
                           f"start {what} and check its log")
    now = utcnow()
    busy = [w for w in live if w.last_item_at and (now - w.last_item_at).total_seconds()
            < stale]
    summary = f"{len(live)} alive ({', '.join(w.worker_id for w in live)})"
    if backlog and not busy and site.settings.broker_url != "embedded":
        return CheckResult(name, Level.WARNING,
                           f"{summary}, but none finished an item in {stale:.0f} s while "
                           "work is queued", "check the workers' log and broker_url/"
                           "queue_name: they may consume another queue")
    return ok(name, summary)


def _cursor(site: _Site) -> CheckResult:
    name = "log cursor"
    checks = site.settings.checks
    with site.engine.connect() as conn:
        lease = conn.execute(select(Lease).where(Lease.name == CURSOR_LEASE)).one()
        cursor = conn.execute(select(CursorRow).where(CursorRow.id == 1)).one()
    if lease.holder is None or lease.lease_until is None or lease.lease_until < utcnow():
        return CheckResult(name, Level.CRITICAL, "no `secondary run` holds the cursor lease",
                           "start `geo-sync secondary run` (systemd: geo-sync-secondary)")
    behind = lag(site.view, site.settings.name, cursor.last_event_at)
    if behind.events is None:
        return CheckResult(name, Level.UNKNOWN, f"held by {lease.holder}; lag unknown "
                           "(primary not queried)", "fix the connection to the primary first")
    seconds = behind.seconds or 0.0
    level = max(by_threshold(behind.events, checks.lag_warning_events,
                             checks.lag_critical_events),
                by_threshold(seconds, checks.lag_warning_seconds, checks.lag_critical_seconds))
    message = f"held by {lease.holder}; {behind.events} event(s), {seconds:.0f} s behind"
    if cursor.last_error and level is Level.OK:
        level = Level.WARNING
    if cursor.last_error:
        message += f"; last error: {cursor.last_error[:200]}"
    return CheckResult(name, level, message,
                       "see the `secondary run` log; `geo-sync status` shows the cursor"
                       if level else "")


def _counts(site: _Site) -> list[CheckResult]:
    checks = site.settings.checks
    counts = site.counts
    if counts is None:
        with site.engine.connect() as conn:
            counts = {name: sync_rows.counts(conn, table)
                      for name, table in registry_tables().items()}
    rows = (
        ("failed items", SyncState.FAILED, checks.failed_warning, checks.failed_critical,
         "`geo-sync status` lists the last errors; `geo-sync resync --failed` retries now"),
        ("mismatched items", "mismatched", checks.mismatched_warning,
         checks.mismatched_critical,
         "`geo-sync drift` lists them; `geo-sync verify --failed` re-checks them"),
        ("missing on primary", "missing_on_primary", checks.missing_on_primary_warning,
         checks.missing_on_primary_critical,
         "the primary lost or never had these items: `geo-sync drift` names them"),
    )
    results = []
    for name, key, warning, critical, hint in rows:
        total = sum(c[key] for c in counts.values())
        per_type = ", ".join(f"{t} {c[key]}" for t, c in counts.items() if c[key])
        level = by_threshold(total, warning, critical)
        results.append(CheckResult(name, level, f"{total}" + (f" ({per_type})" if per_type
                                                              else ""), hint if level else ""))
    return results


def _storage(site: _Site) -> CheckResult:
    name = "storage"
    root = site.settings.mirror_root
    probe = root / f"{TEMP_PREFIX}check-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"geo-sync check")
        os.unlink(probe)  # noqa: PTH108 - the file we just made
    except OSError as exc:
        return CheckResult(name, Level.CRITICAL, f"{root} is not writable: {exc.strerror}",
                           "check that mirror_root exists, is mounted and belongs to the "
                           "geo-sync user")
    space = disk_space(root)
    checks = site.settings.checks
    level = Level.OK
    if space.free_percent <= checks.free_space_critical_percent:
        level = Level.CRITICAL
    elif space.free_percent <= checks.free_space_warning_percent:
        level = Level.WARNING
    return CheckResult(name, level, f"{root} writable, {space.free_percent:.1f}% free "
                       f"({space.free_bytes // 2**20} MiB)",
                       "grow the volume or free space on it before copies fail" if level
                       else "")


def _retention(site: _Site) -> CheckResult:
    name = "retention horizon"
    report = site.view.report
    if report is None:
        return CheckResult(name, Level.UNKNOWN, "primary not queried",
                           "fix the connection to the primary first")
    with site.engine.connect() as conn:
        cursor = conn.execute(select(CursorRow).where(CursorRow.id == 1)).one()
    if site.view.mine(site.settings.name).get("backfill_required"):
        return CheckResult(name, Level.CRITICAL, "the primary pruned past our cursor",
                           "`secondary run` backfills from the catalog; keep it running")
    retention = float(report.get("event_retention_seconds") or 0)
    behind = lag(site.view, site.settings.name, cursor.last_event_at).seconds or 0.0
    ratio = behind / retention if retention else 0.0
    checks = site.settings.checks
    level = by_threshold(ratio, checks.retention_warning_ratio, checks.retention_critical_ratio)
    return CheckResult(name, level, f"{behind:.0f} s behind of {retention:.0f} s retained "
                       f"({ratio:.0%})", "catch up (more workers, check the cursor) before "
                       "the primary prunes past us and a backfill is needed" if level else "")


def secondary_checks(settings: SecondarySettings,
                     counts: dict[str, dict[str, int]] | None = None, *,
                     engine: Engine | None = None,
                     client: PrimaryClient | None = None) -> list[CheckResult]:
    """Every check of a secondary, in the order an operator fixes things (``counts``:
    registry counts per type already read, so `status` scans the registry once;
    ``engine`` and ``client``: the caller's, left open, so `status` connects once and
    builds one TLS context)."""
    results = [ok("config", "valid")]
    own_client, own_engine = client is None, engine is None
    client = client or PrimaryClient(settings)
    engine = engine or make_engine(settings.database_url)
    try:
        view = probe_primary(client)
        site = _Site(settings, engine, view, counts)
        database = _database(site)
        results.append(database)
        results += primary_checks(settings, view)
        results.append(run_check("broker", lambda: _broker(site)))
        local: list[tuple[str, Callable[[_Site], CheckResult]]] = [
            ("workers", _workers), ("log cursor", _cursor)]
        if database.level is not Level.OK:
            skipped = "skipped: the tracking database is not usable"
            results += [CheckResult(n, Level.UNKNOWN, skipped, database.hint)
                        for n, _ in local]
            results += [CheckResult(n, Level.UNKNOWN, skipped, database.hint) for n in
                        ("failed items", "mismatched items", "missing on primary")]
        else:
            results += [run_check(n, partial(f, site)) for n, f in local]
            counted: list[CheckResult] = []
            guarded = run_check("registry counts", lambda: _first(counted, site))
            results += counted or [guarded]
        results.append(run_check("storage", lambda: _storage(site)))
        if database.level is Level.OK:
            results.append(run_check("retention horizon", lambda: _retention(site)))
        return results
    finally:
        if own_client:
            client.close()
        if own_engine:
            engine.dispose()


def _first(into: list[CheckResult], site: _Site) -> CheckResult:
    """Run the count checks into ``into``; return one so ``run_check`` can guard them."""
    into += _counts(site)
    return into[0]
