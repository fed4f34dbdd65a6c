"""Alembic environment for the tracking database; the engine comes from geo_sync.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

config = context.config
engine = config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        version_table=config.get_main_option("version_table") or "alembic_version",
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
