"""`geo-sync check` on a primary: its database, storage, the secondaries it serves,
the size of its event log and whether the checksummer keeps up."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from geo_sync.db import make_engine, utcnow
from geo_sync.health.result import (
    CheckResult,
    Level,
    by_threshold,
    ok,
    run_check,
    schema_check,
)
from geo_sync.migrate import PRIMARY
from geo_sync.primary import fencing, secondaries, site_state
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.settings import PrimarySettings


def _database(engine: Engine) -> CheckResult:
    return schema_check("primary database", PRIMARY, engine, "geo-sync primary migrate")


def _storage(settings: PrimarySettings) -> CheckResult:
    root = settings.storage_root
    if not root.is_dir():
        return CheckResult("storage", Level.CRITICAL, f"{root} is not a directory",
                           "mount the storage or fix storage_root in the config")
    return ok("storage", f"{root} present")


def _secondaries(settings: PrimarySettings, engine: Engine) -> list[CheckResult]:
    checks = settings.checks
    with engine.connect() as conn:
        peers = secondaries.statuses(conn, settings.event_retention_seconds)
    if not peers:
        return [CheckResult("secondaries", Level.WARNING, "none registered",
                            "register one with `geo-sync primary add-secondary NAME`")]
    now = utcnow()
    results = []
    for peer in peers:
        name = f"secondary {peer.name}"
        if not peer.enabled:
            results.append(ok(name, "disabled"))
            continue
        if peer.last_seen_at is None:
            results.append(CheckResult(name, Level.WARNING, "never connected",
                                       "run `geo-sync secondary run` on that site"))
            continue
        silent = (now - peer.last_seen_at).total_seconds()
        level = by_threshold(silent, checks.secondary_seen_warning_seconds,
                             checks.secondary_seen_critical_seconds)
        if peer.backfill_required:
            level = Level.CRITICAL
        message = f"seen {silent:.0f} s ago, {peer.pending_events} event(s) pending"
        if peer.backfill_required:
            message += "; fell behind retention and must backfill"
        results.append(CheckResult(name, level, message,
                                   "check `geo-sync check` on that secondary and the network "
                                   "between the sites" if level else ""))
    return results


def _event_log(settings: PrimarySettings, engine: Engine) -> CheckResult:
    checks = settings.checks
    with engine.connect() as conn:
        size = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    level = by_threshold(size, checks.event_log_warning_events, checks.event_log_critical_events)
    return CheckResult("event log", level, f"{size} event(s) retained",
                       "a silent secondary holds pruning back: check the secondaries above, "
                       "or `geo-sync primary disable-secondary` one that is gone" if level
                       else "")


def _checksummer(settings: PrimarySettings, engine: Engine) -> CheckResult:
    checks = settings.checks
    with engine.connect() as conn:
        waiting, oldest = conn.execute(
            select(func.count(), func.min(CatalogItem.updated_at))
            .where(CatalogItem.checksum.is_(None))).one()
    if not waiting:
        return ok("checksummer", "every catalog item has a checksum")
    age = (utcnow() - oldest).total_seconds() if oldest else 0.0
    level = by_threshold(age, checks.checksum_backlog_warning_seconds,
                         checks.checksum_backlog_critical_seconds)
    return CheckResult("checksummer", level,
                       f"{waiting} item(s) without a checksum, oldest waiting {age:.0f} s",
                       "is `geo-sync primary serve` running? Its log names items it cannot "
                       "hash" if level else "")


def _site(engine: Engine) -> CheckResult:
    """Whether this site takes writes, and whether an old primary is still unfenced."""
    with engine.connect() as conn:
        state = site_state.read_state(conn)
        unfenced = fencing.unfenced(conn)
    if state.demoted:
        return CheckResult("site", Level.WARNING, f"demoted: the primary is now "
                           f"{state.new_primary_url or 'another site'}",
                           "`geo-sync primary rejoin` makes this site a secondary of it")
    if state.awaiting_confirmation:
        return CheckResult("site", Level.CRITICAL, f"publishes refused: "
                           f"{state.unconfirmed_message()}", site_state.UNCONFIRMED_HINT)
    if unfenced:
        old = unfenced[0]
        return CheckResult("site", Level.WARNING,
                           f"old primary not yet fenced: {old['url']} ({old['attempts']} "
                           f"attempts, last: {old['last_error'] or 'none yet'})",
                           "`primary serve` keeps trying until it answers; make sure it "
                           "cannot come back taking writes (it refuses them at its start)")
    if state.maintenance:  # an operator's choice, not a fault
        return ok("site", f"epoch {state.epoch}, maintenance mode: publishes refused "
                  f"({state.maintenance_reason or 'no reason given'})")
    return ok("site", f"epoch {state.epoch}, taking writes")


def primary_health_checks(settings: PrimarySettings) -> list[CheckResult]:
    """Every check of a primary, in the order an operator fixes things."""
    results = [ok("config", "valid")]
    engine = make_engine(settings.database_url)
    try:
        database = _database(engine)
        results += [database, run_check("storage", lambda: _storage(settings))]
        dependent = ("site", "secondaries", "event log", "checksummer")
        if database.level is not Level.OK:
            return results + [CheckResult(n, Level.UNKNOWN, "skipped: the primary database "
                                          "is not usable", database.hint) for n in dependent]
        results.append(run_check("site", lambda: _site(engine)))
        peers: list[CheckResult] = []
        guarded = run_check("secondaries", lambda: _first(peers, settings, engine))
        results += peers or [guarded]
        results.append(run_check("event log", lambda: _event_log(settings, engine)))
        results.append(run_check("checksummer", lambda: _checksummer(settings, engine)))
        return results
    finally:
        engine.dispose()


def _first(into: list[CheckResult], settings: PrimarySettings, engine: Engine) -> CheckResult:
    into += _secondaries(settings, engine)
    return into[0]
