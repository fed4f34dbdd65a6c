from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from geo_sync.db import make_engine
from geo_sync.migrate import PRIMARY
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
