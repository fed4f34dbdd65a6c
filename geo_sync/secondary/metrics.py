"""The site-wide gauges `secondary run` exports: registry counts, lag, workers, the
primary's view. A scrape never touches the database: ``refresh()`` reads everything
into a snapshot on an interval, and ``collect()`` only reports that snapshot."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from geo_sync.db import utcnow
from geo_sync.logging import get_logger
from geo_sync.metrics import METRICS_REFRESH_ERRORS
from geo_sync.secondary import heartbeat
from geo_sync.secondary.client import PrimaryClient
from geo_sync.secondary.leader import CURSOR_LEASE
from geo_sync.secondary.probe import PrimaryView, disk_space, lag, probe_primary, queue_depth
from geo_sync.settings import SecondarySettings
from geo_sync.tracking import lag as item_lag
from geo_sync.tracking.models import CursorRow, Lease
from geo_sync.tracking.states import SyncState, VerificationState
from replicators.type_map import REPLICATORS

log = get_logger("metrics")


@dataclass
class Snapshot:
    """Everything the gauges report, as read at ``taken_at`` (a Unix time)."""

    taken_at: float
    gauges: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)

    def add(self, name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is not None:
            self.gauges.append((name, doc, labels, float(value)))


def _registry_gauges(snap: Snapshot, engine: Engine) -> None:
    with engine.connect() as conn:
        for replicator in REPLICATORS.values():
            model, name = replicator.registry_table, replicator.name
            states = dict(conn.execute(select(model.state, func.count())
                                       .group_by(model.state)).all())
            for state in SyncState:
                snap.add("geo_sync_registry_items", "Registry rows by sync state.",
                         states.get(state.value, 0), type=name, state=state.value)
            checked = dict(conn.execute(select(model.verification_state, func.count())
                                        .group_by(model.verification_state)).all())
            for vstate in VerificationState:
                snap.add("geo_sync_verification_items", "Registry rows by verification state.",
                         checked.get(vstate.value, 0), type=name, state=vstate.value)
            snap.add("geo_sync_mismatched_items", "Copies found to differ from the primary.",
                     conn.execute(select(func.count()).where(model.mismatch_count > 0)
                                  ).scalar_one(), type=name)
            snap.add("geo_sync_missing_on_primary_items", "Items the primary does not have.",
                     conn.execute(select(func.count()).where(model.missing_on_primary.is_(True))
                                  ).scalar_one(), type=name)


def _cursor_gauges(snap: Snapshot, engine: Engine, settings: SecondarySettings,
                   view: PrimaryView) -> None:
    with engine.connect() as conn:
        cursor = conn.execute(select(CursorRow).where(CursorRow.id == 1)).one()
        lease = conn.execute(select(Lease).where(Lease.name == CURSOR_LEASE)).one()
        live = heartbeat.live_workers(conn, settings.checks.worker_stale_seconds)
        workers = heartbeat.all_workers(conn)
    now = utcnow()
    snap.add("geo_sync_cursor_leader_alive", "1 if some `secondary run` holds the cursor lease.",
             int(bool(lease.holder and lease.lease_until and lease.lease_until > now)))
    snap.add("geo_sync_backfill_required", "1 while the cursor must backfill from the catalog.",
             int(cursor.backfill_required))
    snap.add("geo_sync_last_event_processed_id", "Id of the last event applied here.",
             cursor.last_event_id)
    snap.add("geo_sync_last_event_processed_timestamp_seconds",
             "When the last event applied here was written on the primary.",
             cursor.last_event_at.timestamp() if cursor.last_event_at else None)
    snap.add("geo_sync_cursor_events_applied",
             "Events applied since the tracking DB began (by every process).",
             cursor.events_applied)
    behind = lag(view, settings.name, cursor.last_event_at)
    snap.add("geo_sync_cursor_lag_events", "Primary events not yet acknowledged by us.",
             behind.events)
    snap.add("geo_sync_cursor_lag_seconds", "Age of the last event processed while behind.",
             behind.seconds)
    retention = (view.report or {}).get("event_retention_seconds")
    if behind.seconds is not None and isinstance(retention, int | float) and retention:
        snap.add("geo_sync_retention_horizon_ratio",
                 "Lag as a share of the primary's event retention (1 = backfill).",
                 behind.seconds / retention)
    snap.add("geo_sync_workers_alive", "Worker processes with a recent heartbeat.", len(live))
    for worker in workers:
        snap.add("geo_sync_worker_last_heartbeat_timestamp_seconds",
                 "When each worker process last recorded its heartbeat.",
                 worker.beat_at.timestamp(), worker=worker.worker_id, kind=worker.kind)
        snap.add("geo_sync_worker_items_done", "Items each worker process finished.",
                 worker.items_done, worker=worker.worker_id, kind=worker.kind)


def _primary_gauges(snap: Snapshot, view: PrimaryView) -> None:
    report = view.report or {}
    snap.add("geo_sync_primary_reachable", "1 if the primary's Geo API answered.",
             int(view.reachable))
    snap.add("geo_sync_primary_credential_refused", "1 if the primary refused our credential.",
             int(view.refused))
    snap.add("geo_sync_primary_up", "1 if an authenticated round trip to the primary worked.",
             int(view.report is not None))
    snap.add("geo_sync_primary_clock_skew_seconds", "The primary's clock minus ours.",
             view.skew_seconds)
    snap.add("geo_sync_last_event_seen_id", "The primary's newest event id.",
             report.get("last_event_id"))
    if isinstance(report.get("last_event_at"), str):
        snap.add("geo_sync_last_event_seen_timestamp_seconds",
                 "When the primary's newest event was written.",
                 datetime.fromisoformat(report["last_event_at"]).timestamp())


#: Upper bounds (seconds) of the commit-to-verified histogram: a second to a day.
LAG_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
               3600.0, 7200.0, 21600.0, 86400.0)
#: Verifications commit a little after the time they record: look back this far again
#: on every refresh and skip the rows already counted.
LAG_OVERLAP = timedelta(seconds=120)


class LagHistogram:
    """Commit-to-verified lag per type as a Prometheus histogram: every change verified
    since the process started is observed once, on the refresh after its verification."""

    def __init__(self) -> None:
        self.started = self.since = utcnow()
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self._seen: dict[tuple[str, int, datetime], datetime] = {}

    def observe_new(self, engine: Engine) -> None:
        horizon = self.since - LAG_OVERLAP
        newest = self.since
        with engine.connect() as conn:
            for replicator in REPLICATORS.values():
                name = replicator.name
                counts = self.counts.setdefault(name, [0] * (len(LAG_BUCKETS) + 1))
                self.sums.setdefault(name, 0.0)
                for row_id, verified_at, seconds in item_lag.lags_verified_since(
                        conn, replicator.registry_table, horizon, limit=100_000):
                    key = (name, row_id, verified_at)
                    if key in self._seen or verified_at <= self.started:
                        continue
                    self._seen[key] = verified_at
                    newest = max(newest, verified_at)
                    counts[bisect.bisect_left(LAG_BUCKETS, seconds)] += 1
                    self.sums[name] += seconds
        self.since = newest
        self._seen = {k: v for k, v in self._seen.items() if v > newest - LAG_OVERLAP}

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "geo_sync_commit_to_verified_seconds",
            "Time from a change's commit on the primary to its copy's first verification "
            "here, per type (changes verified since this process started).",
            labels=["type"])
        for name, counts in self.counts.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, LAG_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([name], buckets, self.sums[name])
        return family


class SiteCollector(Collector):
    """Reports the last snapshot; ``refresh()`` takes a new one (never during a scrape)."""

    def __init__(self, settings: SecondarySettings, engine: Engine,
                 depth: Callable[[], int | None] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.client = PrimaryClient(settings)
        self.depth = depth or (lambda: queue_depth(settings))
        self.snapshot = Snapshot(0.0)
        self.lag = LagHistogram()

    def refresh(self) -> None:
        snap = Snapshot(utcnow().timestamp())
        view = probe_primary(self.client)
        _primary_gauges(snap, view)
        _registry_gauges(snap, self.engine)
        self.lag.observe_new(self.engine)
        with self.engine.connect() as conn:
            for replicator in REPLICATORS.values():
                oldest = item_lag.oldest_unverified(conn, replicator.registry_table)
                snap.add("geo_sync_oldest_unverified_change_age_seconds",
                         "Age of the oldest change committed on the primary whose copy "
                         "is not verified here yet.",
                         (utcnow() - oldest).total_seconds() if oldest else 0.0,
                         type=replicator.name)
        _cursor_gauges(snap, self.engine, self.settings, view)
        snap.add("geo_sync_queue_depth", "Messages waiting in the broker's queue.",
                 self.depth())
        space = disk_space(self.settings.mirror_root)
        snap.add("geo_sync_mirror_free_bytes", "Free space on the mirror's volume.",
                 space.free_bytes)
        snap.add("geo_sync_mirror_size_bytes", "Size of the mirror's volume.",
                 space.total_bytes)
        snap.add("geo_sync_metrics_refresh_timestamp_seconds",
                 "When these gauges were last read.", snap.taken_at)
        self.snapshot = snap

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, doc, labels, value in self.snapshot.gauges:
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, doc, labels=sorted(labels))
            family.add_metric([labels[key] for key in sorted(labels)], value)
        yield from families.values()
        yield self.lag.family()

    def close(self) -> None:
        self.client.close()


def run_refresher(collector: SiteCollector, stop: threading.Event, interval: float) -> None:
    """Refresh until ``stop``; a failed refresh keeps the old values and is counted."""
    while True:
        try:
            collector.refresh()
        except Exception as exc:
            METRICS_REFRESH_ERRORS.inc()
            log.warning("metrics_refresh_failed", error=str(exc))
        if stop.wait(interval):
            return
