"""Shared fixtures: primary databases on both backends, storage roots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from geo_sync.db import make_engine
from geo_sync.migrate import PRIMARY, TRACKING
from tests.services import temporary_database
from tests.sites import PrimarySite, SecondarySite, primary_site, secondary_site


@pytest.fixture(params=["sqlite", "postgres"])
def primary_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated primary database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'primary.db'}")
        PRIMARY.upgrade(engine)
        yield engine
        engine.dispose()
        return
    with temporary_database() as url:
        engine = make_engine(url)
        PRIMARY.upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated primary database on PostgreSQL only."""
    with temporary_database() as url:
        engine = make_engine(url)
        PRIMARY.upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrimarySite]:
    """A running primary (`geo-sync primary serve`), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        with primary_site(tmp_path / "primary", None) as site:
            yield site
        return
    with temporary_database() as url, primary_site(tmp_path / "primary", url) as site:
        yield site


@pytest.fixture(params=["sqlite", "postgres"])
def tracking_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated tracking database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'tracking.db'}")
        TRACKING.upgrade(engine)
        yield engine
        engine.dispose()
        return
    with temporary_database("geo_tracking") as url:
        engine = make_engine(url)
        TRACKING.upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def secondary(primary: PrimarySite, request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[SecondarySite]:
    """A secondary of ``primary`` whose tracking DB uses the same backend."""
    postgres = primary.settings.database_url.startswith("postgresql")
    if not postgres:
        site = secondary_site(tmp_path / "secondary", primary, None)
        yield site
        site.engine.dispose()
        return
    with temporary_database("geo_tracking") as url:
        site = secondary_site(tmp_path / "secondary", primary, url)
        yield site
        site.engine.dispose()
