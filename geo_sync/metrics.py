"""Prometheus metrics every geo-sync process may export, and the endpoint serving them.

Counters and histograms here change as work happens (no scrape reads a database);
the gauges that describe a whole site (registry counts, lag) are collected by each
role's own collector from a snapshot refreshed on an interval. Names follow
Prometheus's conventions: ``geo_sync_…_total``, ``_seconds``, ``_bytes``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from geo_sync.errors import ConfigError

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_BYTES = tuple(float(4 ** n * 1024) for n in range(12))  # 1 KiB .. 4 GiB

TRANSFER_SECONDS = Histogram(
    "geo_sync_transfer_seconds", "Time to sync (or delete) one item, by type and outcome.",
    ["type", "outcome"], buckets=_SECONDS)
TRANSFER_BYTES = Histogram(
    "geo_sync_transfer_bytes", "Size of each item synced, by type (as the primary stated it).",
    ["type"], buckets=_BYTES)
ITEMS_SYNCED = Counter(
    "geo_sync_items_synced", "Items this process synced or deleted on the mirror.", ["type"])
SYNC_RETRIES = Counter(
    "geo_sync_sync_retries", "Items whose sync failed and were scheduled for a retry.",
    ["type"])
EVENTS_APPLIED = Counter(
    "geo_sync_events_applied", "Primary events this process applied to the registry.")
METRICS_REFRESH_ERRORS = Counter(
    "geo_sync_metrics_refresh_errors",
    "Failed refreshes of the site gauges (the last good values are still reported).")
WORKER_HEARTBEAT = Gauge(
    "geo_sync_worker_heartbeat_timestamp_seconds",
    "When this process last recorded its worker heartbeat in the tracking database.")


def declare_types(type_names: list[str]) -> None:
    """Create each type's counters at 0 now, so that a rate() over them exists before the
    first failure (Prometheus cannot tell a missing series from a healthy one)."""
    for name in type_names:
        ITEMS_SYNCED.labels(name)
        SYNC_RETRIES.labels(name)


def serve_metrics(host: str, port: int, what: str) -> None:
    """Serve ``/metrics`` on ``host:port`` from a background thread; port 0 means off."""
    if port == 0:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics for {what} on {host}:{port}: {exc.strerror}",
            hint="another process holds that port: change metrics.port (or worker_port) "
                 "in the config, or set it to 0 to turn the endpoint off",
        ) from None
MIRROR_REQUESTS = Counter(
    "geo_sync_mirror_requests",
    "Requests the mirror server answered, by type and where from: mirror (its verified "
    "copy), primary (proxied), stale (the primary unreachable: the newest verified copy) "
    "or refuse (503).", ["type", "served_by"])
ZERO_COPY_BYTES = Counter(
    "geo_sync_http_zero_copy_bytes",
    "Response bytes the kernel sent straight from a file (sendfile), never read into "
    "the server: whole-file downloads of artifacts and job logs of 256 KiB and more.")
