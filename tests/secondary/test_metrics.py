"""/metrics of every process: real scrapes of `primary serve`, `secondary run` and each
`geo-sync worker` process, and a collector that never reads the database on a scrape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, func, select

from geo_sync.db import utcnow, write_transaction
from geo_sync.secondary.metrics import SiteCollector
from geo_sync.settings import SecondarySettings
from geo_sync.tracking.sync_rows import insert_ignore, new_row
from replicators.artifact import ArtifactRegistry
from replicators.type_map import REPLICATORS
from tests.deployment import deployment_for, wait_for
from tests.sites import free_ports

CONFIG = Path(__file__).resolve().parents[2] / "config" / "prometheus"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, labels[k]) in ls for k in labels))


def referenced_metrics() -> set[str]:
    """Every geo_sync_ series the alert rules and the dashboard query."""
    text = (CONFIG / "geo-sync-rules.yml").read_text()
    text += json.dumps(json.loads((CONFIG / "grafana-dashboard.json").read_text()))
    return set(re.findall(r"geo_sync_[a-z_]+", text))


def test_every_process_serves_the_series_the_rules_and_the_dashboard_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = free_ports(4)
    secondary_port, worker_port, primary_port = first, first + 1, first + 3
    metrics = {"port": secondary_port, "worker_port": worker_port, "refresh_seconds": 0.5}
    with deployment_for("production", tmp_path, metrics=metrics) as deployment:
        primary = deployment.primary
        primary.stop()
        # Only for `primary serve`: a [primary] override would break the secondary's config.
        with monkeypatch.context() as env:
            env.setenv("GEO_SYNC_PRIMARY__METRICS__PORT", str(primary_port))
            env.setenv("GEO_SYNC_PRIMARY__METRICS__REFRESH_SECONDS", "0.5")
            primary.start()
        deployment.start()
        # Published after the start, so the items arrive as events (not by backfill).

        def backfilled() -> bool:
            try:
                samples = scrape(secondary_port)
            except httpx.ConnectError:  # `secondary run` is still starting
                return False
            return (value(samples, "geo_sync_cursor_leader_alive") == 1
                    and ("geo_sync_backfill_required", ()) in samples
                    and value(samples, "geo_sync_backfill_required") == 0)

        wait_for(backfilled, "the cursor to finish its first backfill", 60)
        deployment.workload(tmp_path / "scratch").initial(repositories=1, artifacts=4, logs=2)
        deployment.wait_converged()

        def counted() -> bool:
            samples = scrape(secondary_port)
            return all(value(samples, "geo_sync_registry_items", type=r.name, state="synced")
                       == _synced(deployment.secondary.engine, r.name)
                       and _synced(deployment.secondary.engine, r.name) > 0
                       for r in REPLICATORS.values())

        wait_for(counted, "the secondary's gauges to show the synced registry", 60)
        # The first worker process may have synced everything before the second one's
        # first heartbeat (it starts as slowly as the machine is loaded).
        wait_for(lambda: value(scrape(secondary_port), "geo_sync_workers_alive") == 2,
                 "both worker processes' heartbeats in the gauge", 60)
        secondary = scrape(secondary_port)
        workers = [scrape(worker_port), scrape(worker_port + 1)]
        primary_samples = scrape(primary_port)
        assert value(secondary, "geo_sync_workers_alive") == 2
        assert value(secondary, "geo_sync_primary_up") == 1
        assert value(secondary, "geo_sync_cursor_lag_events") == 0
        assert value(secondary, "geo_sync_last_event_processed_id") == value(
            secondary, "geo_sync_last_event_seen_id") > 0
        done = sum(value(w, "geo_sync_transfer_seconds_count", outcome="synced")
                   for w in workers)
        assert done == sum(_synced(deployment.secondary.engine, r.name)
                           for r in REPLICATORS.values())
        assert sum(value(w, "geo_sync_transfer_bytes_sum", type="artifact")
                   for w in workers) > 0
        assert all(value(w, "geo_sync_worker_heartbeat_timestamp_seconds") > 0
                   for w in workers)
        assert value(primary_samples, "geo_sync_primary_catalog_items", type="artifact") == 4
        exported = {_base(name) for samples in (secondary, primary_samples, *workers)
                    for name, _ in samples}
        assert {_base(name) for name in referenced_metrics()} - exported == set()


def _base(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _synced(engine: Engine, type_name: str) -> int:
    model = REPLICATORS[type_name].registry_table
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(model.state == "synced")
                                ).scalar_one())


@pytest.fixture
def collector(tracking_engine: Engine, tmp_path: Path) -> Iterator[SiteCollector]:
    settings = SecondarySettings(name="s1", secret="s" * 40,
                                 primary_url="http://127.0.0.1:9", database_url="sqlite:///x",
                                 mirror_root=tmp_path)
    found = SiteCollector(settings, tracking_engine, depth=lambda: 0)
    yield found
    found.close()


def test_a_scrape_reports_the_last_refresh_without_reading_the_database(
        collector: SiteCollector, tracking_engine: Engine) -> None:
    with write_transaction(tracking_engine) as conn:
        insert_ignore(conn, ArtifactRegistry, [new_row(f"a{n}", f"a/{n}") for n in range(7)])
    collector.refresh()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(tracking_engine, "before_cursor_execute", count)
    try:
        families = {f.name: f for f in collector.collect()}
    finally:
        event.remove(tracking_engine, "before_cursor_execute", count)
    assert statements == []
    pending = [s for s in families["geo_sync_registry_items"].samples
               if s.labels == {"type": "artifact", "state": "pending"}]
    assert [s.value for s in pending] == [7]
    reachable = families["geo_sync_primary_reachable"].samples[0].value
    assert reachable == 0  # nothing listens on port 9


def test_a_worker_given_its_own_metrics_port_serves_there(tmp_path: Path) -> None:
    port = free_ports(1)
    with deployment_for("production", tmp_path) as deployment:
        deployment._spawn("workers", "worker", "--processes", "1", "--metrics-port", str(port))

        def served() -> bool:
            try:
                return ("geo_sync_sync_retries_total", (("type", "artifact"),)) in scrape(port)
            except httpx.ConnectError:
                return False

        wait_for(served, "the worker's /metrics on its --metrics-port", 60)
        assert value(scrape(port), "geo_sync_sync_retries_total") == 0


def test_each_verified_change_is_observed_once_in_the_lag_histogram(
        collector: SiteCollector, tracking_engine: Engine) -> None:
    def verified(record_id: str, lag: float) -> dict[str, object]:
        at = utcnow()
        return {**new_row(record_id, record_id), "change_verified_at": at,
                "change_committed_at": at - timedelta(seconds=lag)}

    def histogram() -> dict[str, float]:
        [family] = [f for f in collector.collect()
                    if f.name == "geo_sync_commit_to_verified_seconds"]
        return {s.labels.get("le", s.name): s.value for s in family.samples
                if s.labels["type"] == "artifact"}

    with write_transaction(tracking_engine) as conn:
        insert_ignore(conn, ArtifactRegistry, [verified("a", 0.2), verified("b", 20.0),
                                               verified("c", 4000.0)])
        # Verified before the process started: not this process's to count.
        insert_ignore(conn, ArtifactRegistry, [{**verified("old", 1.0),
                                                "change_verified_at": utcnow()
                                                - timedelta(hours=1)}])
    collector.refresh()
    collector.refresh()  # the overlap looks at the same rows again: counted once
    seen = histogram()
    assert seen["geo_sync_commit_to_verified_seconds_count"] == 3
    assert seen["geo_sync_commit_to_verified_seconds_sum"] == pytest.approx(4020.2)
    assert (seen["0.5"], seen["30.0"], seen["3600.0"], seen["+Inf"]) == (1, 2, 2, 3)
    with write_transaction(tracking_engine) as conn:
        insert_ignore(conn, ArtifactRegistry, [verified("d", 3.0)])
    collector.refresh()
    assert histogram()["geo_sync_commit_to_verified_seconds_count"] == 4
    oldest = [f for f in collector.collect()
              if f.name == "geo_sync_oldest_unverified_change_age_seconds"]
    assert oldest and all(s.value == 0 for s in oldest[0].samples)
