"""The gauges `primary serve` exports: catalog and event-log sizes, the checksummer's
backlog, and each secondary as the primary sees it. Read on an interval by the API's
background loop; a scrape only reports the last reading."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from geo_sync.db import utcnow
from geo_sync.primary import secondaries
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.settings import PrimarySettings
from replicators.type_map import REPLICATORS


class PrimaryCollector(Collector):
    """Reports the families read by the last ``refresh()``."""

    def __init__(self, settings: PrimarySettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.families: list[GaugeMetricFamily] = []

    def refresh(self) -> None:
        with self.engine.connect() as conn:
            catalog = dict(conn.execute(select(CatalogItem.replicable_type, func.count())
                                        .group_by(CatalogItem.replicable_type)).all())
            unhashed = dict(conn.execute(
                select(CatalogItem.replicable_type, func.count())
                .where(CatalogItem.checksum.is_(None))
                .group_by(CatalogItem.replicable_type)).all())
            retained, last_id = conn.execute(select(func.count(), func.max(Event.id))).one()
            last_at = conn.execute(select(Event.created_at).where(Event.id == last_id)
                                   ).scalar() if last_id is not None else None
            peers = secondaries.statuses(conn, self.settings.event_retention_seconds)
        items = GaugeMetricFamily("geo_sync_primary_catalog_items", "Items in the catalog.",
                                  labels=["type"])
        waiting = GaugeMetricFamily("geo_sync_primary_checksum_pending_items",
                                    "Catalog items still without a checksum.", labels=["type"])
        for name in REPLICATORS:
            items.add_metric([name], catalog.get(name, 0))
            waiting.add_metric([name], unhashed.get(name, 0))
        families = [items, waiting,
                    GaugeMetricFamily("geo_sync_primary_events_retained",
                                      "Events in the log (not yet pruned).", value=retained)]
        if last_id is not None:
            families.append(GaugeMetricFamily("geo_sync_primary_last_event_id",
                                              "The newest event id.", value=last_id))
        if last_at is not None:
            families.append(GaugeMetricFamily(
                "geo_sync_primary_last_event_timestamp_seconds",
                "When the newest event was written.", value=last_at.timestamp()))
        seen = GaugeMetricFamily("geo_sync_primary_secondary_last_seen_timestamp_seconds",
                                 "When each secondary last called the Geo API.",
                                 labels=["secondary"])
        pending = GaugeMetricFamily("geo_sync_primary_secondary_pending_events",
                                    "Events each secondary has not acknowledged.",
                                    labels=["secondary"])
        flags = GaugeMetricFamily("geo_sync_primary_secondary_backfill_required",
                                  "1 if a secondary fell behind retention.",
                                  labels=["secondary"])
        enabled = GaugeMetricFamily("geo_sync_primary_secondary_enabled",
                                    "1 if a secondary is enabled.", labels=["secondary"])
        for peer in peers:
            if peer.last_seen_at is not None:
                seen.add_metric([peer.name], peer.last_seen_at.timestamp())
            pending.add_metric([peer.name], peer.pending_events)
            flags.add_metric([peer.name], int(peer.backfill_required))
            enabled.add_metric([peer.name], int(peer.enabled))
        families += [seen, pending, flags, enabled,
                     GaugeMetricFamily("geo_sync_metrics_refresh_timestamp_seconds",
                                       "When these gauges were last read.",
                                       value=utcnow().timestamp())]
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
