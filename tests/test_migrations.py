from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from geo_sync.db import make_engine, write_transaction
from geo_sync.migrate import PRIMARY, TRACKING, Schema
from tests.services import temporary_database


def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    return set(inspect(engine).get_table_names())


def test_primary_schema_upgrades_and_downgrades_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    PRIMARY.upgrade(engine)
    assert {"geo_events", "geo_catalog", "geo_secondaries"} <= _tables(engine)
    assert PRIMARY.current(engine) == PRIMARY.head()
    PRIMARY.downgrade(engine, "base")
    assert "geo_events" not in _tables(engine)


def test_primary_schema_upgrades_and_downgrades_on_postgres() -> None:
    with temporary_database() as url:
        engine = make_engine(url)
        PRIMARY.upgrade(engine)
        assert {"geo_events", "geo_catalog", "geo_secondaries"} <= _tables(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname = 'geo_publish'"
            ).scalar_one() == 1
        PRIMARY.downgrade(engine, "base")
        assert "geo_events" not in _tables(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname = 'geo_publish'"
            ).scalar_one() == 0
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_tracking_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty tracking database of each backend, disposed (and the
    PostgreSQL database dropped) after the test."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 't.db'}" if request.param == "sqlite"
               else stack.enter_context(temporary_database("geo_tracking")))
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_tracking_t0002_adds_sweep_columns_over_existing_rows_and_back(
    empty_tracking_engine: Engine,
) -> None:
    engine = empty_tracking_engine
    TRACKING.upgrade(engine, "t0001")
    with write_transaction(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO geo_artifact_registry (record_id, path, state, generation, "
            "tombstone, retry_count, missing_on_primary, created_at, updated_at, "
            "verification_state, verification_retry_count, mismatch_count) VALUES "
            "('a', 'a.bin', 'synced', 1, false, 0, false, CURRENT_TIMESTAMP, "
            "CURRENT_TIMESTAMP, 'succeeded', 0, 0)")
    TRACKING.upgrade(engine, "t0002")
    assert TRACKING.current(engine) == "t0002"
    columns = {c["name"] for c in inspect(engine).get_columns("geo_artifact_registry")}
    assert {"verified_fingerprint", "blocked_on"} <= columns
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT record_id, verified_fingerprint, blocked_on "
                                    "FROM geo_artifact_registry").one() == ("a", None, None)
    TRACKING.downgrade(engine, "t0001")
    columns = {c["name"] for c in inspect(engine).get_columns("geo_artifact_registry")}
    assert "blocked_on" not in columns and "verified_fingerprint" not in columns


def test_tracking_t0004_counts_existing_rows_and_indexes_them_and_back(
    empty_tracking_engine: Engine,
) -> None:
    engine = empty_tracking_engine
    TRACKING.upgrade(engine, "t0003")
    with write_transaction(engine) as conn:
        for record_id, state in (("a", "synced"), ("b", "synced"), ("c", "failed")):
            conn.exec_driver_sql(
                "INSERT INTO geo_artifact_registry (record_id, path, state, generation, "
                "tombstone, retry_count, missing_on_primary, created_at, updated_at, "
                "verification_state, verification_retry_count, mismatch_count) VALUES "
                f"('{record_id}', 'x', '{state}', 1, false, 0, false, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, 'succeeded', 0, 0)")
    TRACKING.upgrade(engine, "t0004")
    with engine.connect() as conn:
        counted = dict(conn.exec_driver_sql(
            "SELECT state, sum(rows) FROM geo_registry_counts "
            "WHERE registry_table = 'geo_artifact_registry' GROUP BY state").all())
    assert {k: int(v) for k, v in counted.items()} == {"synced": 2, "failed": 1}
    indexes = {i["name"] for i in inspect(engine).get_indexes("geo_artifact_registry")}
    assert {"ix_geo_artifact_registry_enqueued", "ix_geo_artifact_registry_verify_due",
            "ix_geo_artifact_registry_verified_at"} <= indexes
    TRACKING.downgrade(engine, "t0003")
    assert "geo_registry_counts" not in _tables(engine)
    indexes = {i["name"] for i in inspect(engine).get_indexes("geo_artifact_registry")}
    assert "ix_geo_artifact_registry_enqueued" not in indexes
    with write_transaction(engine) as conn:  # no trigger left writing to a lost table
        conn.exec_driver_sql("UPDATE geo_artifact_registry SET state = 'pending'")


@pytest.mark.parametrize("schema", [PRIMARY, TRACKING], ids=lambda s: s.name)
def test_the_head_read_from_the_scripts_is_alembics(schema: Schema, tmp_path: Path) -> None:
    """`head()` and `current()` avoid importing alembic (status and every start use
    them); they must say what alembic says."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    assert [schema.head()] == ScriptDirectory(str(schema.script_location)).get_heads()
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert schema.current(engine) is None
    schema.upgrade(engine)
    with engine.connect() as conn:
        assert schema.current(engine) == MigrationContext.configure(
            conn, opts={"version_table": schema.version_table}).get_current_revision()
    engine.dispose()
