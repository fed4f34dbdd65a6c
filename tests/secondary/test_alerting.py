"""End to end: a real Prometheus scrapes a running secondary with the shipped rules and
sees the refusal alert fire when the primary disables us, and the unreachable alert
when the primary stops."""

from __future__ import annotations

from pathlib import Path

from geo_sync.db import write_transaction
from geo_sync.primary.secondaries import set_enabled
from tests.deployment import deployment_for, wait_for
from tests.prometheus import binary, prometheus_server
from tests.sites import free_port


def test_prometheus_tells_a_refusing_primary_from_a_stopped_one(tmp_path: Path) -> None:
    binary("prometheus")
    port = free_port()
    metrics = {"port": port, "refresh_seconds": 0.5}
    with deployment_for("embedded", tmp_path, metrics=metrics) as deployment, \
            prometheus_server(tmp_path / "prometheus",
                              {"geo-sync-secondary": [f"127.0.0.1:{port}"]}) as prometheus:
        deployment.start()

        def scraped_healthy() -> bool:
            reachable = prometheus.query("geo_sync_primary_reachable")
            workers = prometheus.query("geo_sync_workers_alive")
            return (bool(reachable) and reachable[0]["value"][1] == "1"
                    and bool(workers) and workers[0]["value"][1] == "1")

        wait_for(scraped_healthy, "Prometheus to scrape a healthy secondary", 90)
        assert not prometheus.firing("GeoSyncPrimaryUnreachable")
        assert not prometheus.firing("GeoSyncWorkersDown")

        with write_transaction(deployment.primary.engine) as conn:
            set_enabled(conn, "s1", enabled=False)
        wait_for(lambda: prometheus.firing("GeoSyncPrimaryRefusesCredential"),
                 "the refused-credential alert to fire", 90)
        assert not prometheus.firing("GeoSyncPrimaryUnreachable")
        with write_transaction(deployment.primary.engine) as conn:
            set_enabled(conn, "s1", enabled=True)
        wait_for(lambda: not prometheus.firing("GeoSyncPrimaryRefusesCredential"),
                 "the refused-credential alert to resolve", 90)

        deployment.primary.stop()
        wait_for(lambda: prometheus.firing("GeoSyncPrimaryUnreachable"),
                 "the primary-unreachable alert to fire", 90)
        firing = [a for a in prometheus.alerts() if a["state"] == "firing"]
        unreachable = [a for a in firing if a["labels"]["alertname"] ==
                       "GeoSyncPrimaryUnreachable"]
        assert unreachable[0]["labels"]["instance"] == f"127.0.0.1:{port}"
        assert unreachable[0]["annotations"]["runbook"].startswith("docs/operations.md#")
        # Unreachable is not a refusal: that alert stays quiet.
        assert not prometheus.firing("GeoSyncPrimaryRefusesCredential")
