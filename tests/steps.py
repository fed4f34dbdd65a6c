"""Driving a secondary one step at a time in this process: publish an artifact on the
primary, apply the log (``LogCursor.run_once``), read a registry row back. Used by the
unit tests of the worker, verifier and recovery steps."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import Runtime
from replicators.artifact import ArtifactReplicator
from tests.sites import PrimarySite

ARTIFACT = ArtifactReplicator
MODEL = ArtifactReplicator.registry_table


def publish_artifact(primary: PrimarySite, path: str, content: bytes | None,
                     event: str = "created") -> None:
    """Publish ``path``; with ``content`` None, no file is written (the primary catalogs
    an item it cannot serve, or the event is a delete)."""
    data = content if content is not None else b"never written"
    if content is not None:
        full = primary.storage(ARTIFACT.storage_dir) / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(content)
    fields: dict[str, Any] = {}
    if event == "created":
        fields = {"size": len(data), "checksum": hashlib.sha256(data).hexdigest()}
    with write_transaction(primary.engine) as conn:
        publish(conn, Change(ARTIFACT.name, event, path, **fields))


def apply_events(runtime: Runtime) -> None:
    """Apply every event the primary has, as the log cursor's passes do."""
    cursor = LogCursor(runtime)
    while cursor.run_once(wait=0):
        pass


def row(runtime: Runtime, path: str) -> Any:
    """The artifact registry row at ``path`` (None if there is none)."""
    with Session(runtime.engine) as session:
        return session.scalars(select(MODEL).where(MODEL.path == path)).one_or_none()


def row_ids(runtime: Runtime) -> list[int]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(select(MODEL.id).order_by(MODEL.id)).scalars())
