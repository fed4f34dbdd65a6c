"""What a secondary process holds while it runs: settings, tracking DB, primary client."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from geo_sync.db import make_engine, utcnow, write_transaction
from geo_sync.migrate import TRACKING
from geo_sync.secondary.client import PrimaryClient
from geo_sync.settings import SecondarySettings
from geo_sync.tracking import epoch_row, sync_rows
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import DataType, SyncContext
from replicators.repository import configure_git_timeouts
from replicators.type_names import check_type_settings


@dataclass
class Runtime:
    """Shared by the cursor, the scheduler and the worker threads of one process."""

    settings: SecondarySettings
    engine: Engine
    client: PrimaryClient
    worker_id: str
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Items this process finished (synced, deleted or failed): its heartbeat reports them,
    #: so `check` can tell a worker that is alive from one that is consuming.
    items_done: int = 0
    last_item_at: datetime | None = None
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note_item_done(self) -> None:
        with self._count_lock:
            self.items_done += 1
            self.last_item_at = utcnow()

    @property
    def sync_context(self) -> SyncContext:
        return SyncContext(client=self.client, mirror_root=self.settings.mirror_root,
                           copy_moved=self._copy_moved)

    def _copy_moved(self, data_type: type[DataType], item: Claimed) -> None:
        with write_transaction(self.engine) as conn:
            sync_rows.copy_moved(conn, data_type.registry_table, item)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


def open_runtime(settings: SecondarySettings) -> Runtime:
    """Connect to the tracking DB (at the current schema) and prepare the primary client."""
    check_type_settings(settings)
    engine = make_engine(settings.database_url, pool_size=settings.worker_threads + 4)
    TRACKING.require_current(engine)
    configure_git_timeouts(settings.http_timeout_seconds)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    with engine.connect() as conn:
        floor = epoch_row.read(conn).epoch
    return Runtime(settings, engine, PrimaryClient(settings, epoch_floor=floor), worker_id)
