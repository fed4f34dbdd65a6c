"""Prometheus metrics of a secondary process."""

from __future__ import annotations

from prometheus_client import Histogram

TRANSFER_SECONDS = Histogram(
    "geo_sync_transfer_seconds", "Seconds per item transfer", ["replicable"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)


def observe_transfer(replicable: str, seconds: float) -> None:
    TRANSFER_SECONDS.labels(replicable=replicable).observe(seconds)
