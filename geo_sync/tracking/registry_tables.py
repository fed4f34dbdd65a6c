"""Creating and dropping the registry table of a data type, with its row counting."""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from geo_sync.db import write_transaction
from geo_sync.tracking import row_counts
from geo_sync.tracking.models import registry_model


def create_registry_table(bind: Connection | Engine, type_name: str) -> None:
    """Create the registry table of a new data type, its indexes and the triggers that
    count its rows. The one step a tracking-DB migration for a new type runs:
    ``create_registry_table(op.get_bind(), "widget")``; ``drop_registry_table`` undoes
    it."""
    if isinstance(bind, Engine):
        with write_transaction(bind) as conn:
            create_registry_table(conn, type_name)
        return
    table = registry_model(type_name).__table__  # type: ignore[attr-defined]
    table.create(bind)
    row_counts.install(bind, table.name)


def drop_registry_table(bind: Connection | Engine, type_name: str) -> None:
    if isinstance(bind, Engine):
        with write_transaction(bind) as conn:
            drop_registry_table(conn, type_name)
        return
    table = registry_model(type_name).__table__  # type: ignore[attr-defined]
    row_counts.uninstall(bind, table.name)
    table.drop(bind)
