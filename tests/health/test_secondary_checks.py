"""`geo-sync check` on a secondary, against a real primary and real processes, on
SQLite and PostgreSQL: each fault shows as its own check, with Nagios exit codes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from geo_sync.db import write_transaction
from geo_sync.migrate import TRACKING
from geo_sync.tracking.sync_rows import insert_ignore, new_row
from replicators.artifact import ArtifactRegistry
from tests.health.conftest import run_check
from tests.sites import PrimarySite, SecondarySite


def test_a_healthy_secondary_passes_every_check_and_exits_0(running: SecondarySite) -> None:
    checked = run_check(running.config)
    assert checked.code == 0, checked.text
    assert {c["status"] for c in checked.report["checks"]} == {"OK"}
    names = {c["check"] for c in checked.report["checks"]}
    assert {"config", "tracking database", "primary reachable", "credential accepted",
            "clock skew", "broker", "workers", "log cursor", "failed items",
            "mismatched items", "missing on primary", "storage",
            "retention horizon"} <= names
    assert checked.text.splitlines()[-1] == "OK: Healthy"


def test_a_stopped_primary_is_unreachable_and_critical(primary: PrimarySite,
                                                      running: SecondarySite) -> None:
    primary.stop()
    checked = run_check(running.config)
    assert checked.code == 2
    assert checked.level("primary reachable") == "CRITICAL"
    assert checked.level("credential accepted") == "UNKNOWN"
    assert "CRITICAL primary reachable:" in checked.text and "hint:" in checked.text


def test_a_refused_credential_is_named_as_a_refusal_not_as_unreachable(
        secondary: SecondarySite) -> None:
    checked = run_check(secondary.config, GEO_SYNC_SECONDARY__SECRET="w" * 40)
    assert checked.level("primary reachable") == "OK"
    refused = checked.result("credential accepted")
    assert refused["status"] == "CRITICAL" and "refused our credential" in refused["message"]
    assert "unreachable" not in refused["message"]
    assert checked.code == 2


def test_no_worker_and_no_cursor_holder_are_critical_with_what_to_start(
        secondary: SecondarySite) -> None:
    checked = run_check(secondary.config)
    assert checked.level("workers") == "CRITICAL"
    assert "secondary run" in checked.result("workers")["hint"]
    assert checked.level("log cursor") == "CRITICAL"
    assert checked.code == 2


def test_failed_items_warn_then_turn_critical_at_their_thresholds(
        secondary: SecondarySite) -> None:
    with write_transaction(secondary.engine) as conn:
        insert_ignore(conn, ArtifactRegistry,
                      [new_row(f"x/{n}.bin", f"x/{n}.bin") for n in range(3)])
        conn.execute(update(ArtifactRegistry).values(state="failed", last_error="boom"))
    assert run_check(secondary.config).level("failed items") == "WARNING"
    critical = run_check(secondary.config, GEO_SYNC_SECONDARY__CHECKS__FAILED_CRITICAL="3")
    assert critical.result("failed items")["message"].startswith("3 (artifact 3)")
    assert critical.level("failed items") == "CRITICAL"
    assert "resync --failed" in critical.result("failed items")["hint"]


def test_an_old_schema_is_critical_and_says_to_migrate(secondary: SecondarySite) -> None:
    TRACKING.downgrade(secondary.engine, "t0001")
    checked = run_check(secondary.config)
    database = checked.result("tracking database")
    assert database["status"] == "CRITICAL" and "secondary migrate" in database["hint"]
    assert checked.level("workers") == "UNKNOWN"
    assert checked.code == 2


def test_storage_that_cannot_be_written_is_critical(secondary: SecondarySite,
                                                    tmp_path: Path) -> None:
    checked = run_check(secondary.config,
                        GEO_SYNC_SECONDARY__MIRROR_ROOT=str(tmp_path / "not-there"))
    assert checked.level("storage") == "CRITICAL"
    assert "not writable" in checked.result("storage")["message"]


def test_thresholds_are_settings(secondary: SecondarySite) -> None:
    checked = run_check(secondary.config,
                        GEO_SYNC_SECONDARY__CHECKS__CLOCK_SKEW_WARNING_SECONDS="0.000001",
                        GEO_SYNC_SECONDARY__CHECKS__FREE_SPACE_WARNING_PERCENT="100")
    assert checked.level("clock skew") == "WARNING"
    assert "NTP" in checked.result("clock skew")["hint"]
    assert checked.level("storage") == "WARNING"


def test_an_invalid_config_is_one_critical_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('role = "secondary"\n[secondary]\nname = "x"\n')
    checked = run_check(config)
    assert checked.code == 2
    assert checked.report["checks"][0]["check"] == "config"
    assert checked.text.startswith("CRITICAL config: invalid config")
