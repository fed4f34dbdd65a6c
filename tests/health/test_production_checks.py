"""`geo-sync check` on a production secondary (PostgreSQL, Redis, separate worker
processes): the broker and the workers' heartbeats, with real processes killed."""

from __future__ import annotations

from pathlib import Path

from tests.deployment import deployment_for, wait_for
from tests.health.conftest import run_check


def test_killed_workers_go_stale_and_an_unreachable_redis_is_critical(tmp_path: Path) -> None:
    with deployment_for("production", tmp_path, worker_heartbeat_seconds=0.5) as deployment:
        config = deployment.secondary.config
        fast = {"GEO_SYNC_SECONDARY__CHECKS__WORKER_STALE_SECONDS": "3"}
        deployment.start()
        wait_for(lambda: run_check(config, **fast).code == 0, "a healthy production site", 90)
        healthy = run_check(config, **fast)
        assert healthy.result("broker")["message"].startswith("Redis reachable")
        assert healthy.result("workers")["message"].startswith("2 alive")

        deployment.kill_workers()
        wait_for(lambda: run_check(config, **fast).level("workers") == "CRITICAL",
                 "the killed workers' heartbeats to go stale", 60)
        dead = run_check(config, **fast)
        assert "geo-sync worker" in dead.result("workers")["hint"]
        assert dead.code == 2

        no_redis = run_check(config, GEO_SYNC_SECONDARY__BROKER_URL="redis://127.0.0.1:1/0")
        assert no_redis.level("broker") == "CRITICAL"
        assert "broker_url" in no_redis.result("broker")["hint"]
