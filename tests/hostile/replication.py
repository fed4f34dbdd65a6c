"""One step the hostile-input tests share: apply every pending event and sync every
pending row, in this process."""

from __future__ import annotations

from sqlalchemy import select

from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime
from geo_sync.secondary.tasks import sync_items
from replicators.type_map import replicator_for


def replicate(runtime: Runtime, type_name: str) -> dict[str, str]:
    """Apply every pending event, sync every pending row; return record id -> state."""
    cursor = LogCursor(runtime)
    while cursor.run_once(wait=0):
        pass
    model = replicator_for(type_name).registry_table
    with runtime.engine.connect() as conn:
        pending = conn.execute(select(model.id).where(model.state == "pending")).scalars().all()
    sync_items(runtime, type_name, list(pending))
    with runtime.engine.connect() as conn:
        return {row.record_id: row.state for row in conn.execute(
            select(model.record_id, model.state))}
