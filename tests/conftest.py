"""Shared fixtures: primary databases on both backends, storage roots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine

from geo_sync.db import make_engine
from geo_sync.migrate import PRIMARY, TRACKING, Schema
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime, open_runtime
from tests.services import temporary_database
from tests.sites import PrimarySite, SecondarySite, primary_site, secondary_site

# Generated cases talk to real databases and servers on two shared cores: a per-example
# deadline would be a timed assertion (flaky), so none. Failing examples are printed
# with the seed to reproduce them; no example database is kept between runs.
settings.register_profile("geo-sync", deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("geo-sync")

# xdist's workers (make test) run with COLUMNS=80 and LINES=24 set, a plain pytest run
# with neither: the CLI honours COLUMNS, so the commands the tests run into pipes would
# wrap their output at 80 columns only under make test.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def _migrated(schema: Schema, backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh database of ``backend`` at ``schema``'s head."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / f'{schema.name}.db'}")
        schema.upgrade(engine)
        yield engine
        engine.dispose()
        return
    with temporary_database(f"geo_{schema.name}") as url:
        engine = make_engine(url)
        schema.upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def primary_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated primary database, once on SQLite and once on PostgreSQL."""
    yield from _migrated(PRIMARY, request.param, tmp_path)


@pytest.fixture
def pg_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated primary database on PostgreSQL only."""
    yield from _migrated(PRIMARY, "postgres", tmp_path)


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
    yield from _migrated(TRACKING, request.param, tmp_path)


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


@pytest.fixture
def runtime(secondary: SecondarySite) -> Iterator[Runtime]:
    """The secondary's runtime in this process, past its first (empty) backfill: drive
    its steps (``LogCursor.run_once``, ``sync_items``, ``verify_items``) directly."""
    rt = open_runtime(secondary.settings)
    LogCursor(rt).run_once(wait=0)  # the first start backfills an empty catalog
    yield rt
    rt.close()
