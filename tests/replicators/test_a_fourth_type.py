"""A new data type is one class: a blob type defined only here is published, synced,
verified and shown in `status`, with no product file touched for it.

Once embedded (SQLite, in-process broker) and once as production runs (PostgreSQL for
both databases, published through the geo_publish() SQL function as a CI system in
another language would, a Redis broker and a dramatiq worker). Everything runs in this
process, because a type defined in tests/ exists only in the process that imported it.
The type's two migrations are the one call each that a real migration would make:
``accept_data_type`` (primary) and ``create_registry_table`` (tracking).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import dramatiq
import pytest
from rich.console import Console
from sqlalchemy import Engine, text

from geo_sync.cli import secondary_view
from geo_sync.db import is_postgres, make_engine, write_transaction
from geo_sync.demo import SECONDARY_TUNING, _run, _serve, free_port
from geo_sync.primary.data_types import accept_data_type
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.secondary import bootstrap
from geo_sync.secondary.daemon import SecondaryDaemon
from geo_sync.secondary.site import init_secondary
from geo_sync.secondary.status import secondary_status
from geo_sync.settings import load_settings
from geo_sync.tracking.models import Registry, registry_model
from geo_sync.tracking.registry_tables import create_registry_table
from replicators.blob import BlobReplicator
from replicators.type_map import REPLICATORS
from replicators.type_names import DATA_TYPES
from tests.services import private_redis, temporary_database


class WidgetReplicator(BlobReplicator):
    """A fourth blob type: everything it needs is this class."""

    name: ClassVar[str] = "widget"
    events: ClassVar[tuple[str, ...]] = ("created", "deleted")
    storage_dir: ClassVar[str] = "widgets"
    registry_table: ClassVar[Registry] = registry_model(name)


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _publish(engine: Engine, change: Change) -> None:
    """On PostgreSQL straight through the SQL function, as any CI system may."""
    with write_transaction(engine) as conn:
        if not is_postgres(engine):
            publish(conn, change)
            return
        conn.execute(text("SELECT geo_publish(:t, :e, :p, NULL, :s, :c, NULL)"),
                     {"t": change.replicable_type, "e": change.event, "p": change.path,
                      "s": change.size, "c": change.checksum})


@contextmanager
def _workers(daemon: SecondaryDaemon) -> Iterator[None]:
    """A dramatiq worker on the daemon's Redis broker, as `geo-sync worker` runs one."""
    bootstrap.install_runtime(daemon.runtime)
    worker = dramatiq.Worker(daemon.messaging.broker, worker_threads=2)
    worker.start()
    try:
        yield
    finally:
        worker.stop()


@pytest.mark.parametrize(("backend", "size"), [
    ("sqlite", 0), ("sqlite", 1), ("sqlite", 70_000), ("postgres", 70_000)])
def test_a_blob_type_defined_only_in_tests_is_published_synced_verified_and_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, size: int
) -> None:
    # Registering a type is one entry in DATA_TYPES; the map of classes is built from it
    # when replicators.type_map is first imported, which this test already did.
    monkeypatch.setitem(DATA_TYPES, WidgetReplicator.name, f"{__name__}:WidgetReplicator")
    monkeypatch.setitem(REPLICATORS, WidgetReplicator.name, WidgetReplicator)
    with ExitStack() as stack:
        urls: dict[str, Any] = {"primary": None, "tracking": None, "broker": "embedded"}
        if backend == "postgres":
            urls["primary"] = stack.enter_context(temporary_database("geo_primary"))
            urls["tracking"] = stack.enter_context(temporary_database("geo_tracking"))
            urls["broker"] = stack.enter_context(private_redis()).url
        primary = load_settings(init_primary(
            tmp_path / "primary", database_url=urls["primary"], listen_port=free_port()
        )).require_primary()
        primary_engine = make_engine(primary.database_url)
        stack.callback(primary_engine.dispose)
        with write_transaction(primary_engine) as conn:
            accept_data_type(conn, WidgetReplicator)  # the type's primary migration
            secret = add_secondary(conn, "s1")
        data = bytes(range(256)) * (size // 256) + b"w" * (size % 256)
        blob = primary.storage_root / "widgets" / "team" / "w1.bin"
        blob.parent.mkdir(parents=True)
        blob.write_bytes(data)
        _publish(primary_engine, Change("widget", "created", "team/w1.bin", size=size,
                                        checksum=hashlib.sha256(data).hexdigest()))

        secondary = load_settings(init_secondary(
            tmp_path / "secondary", primary_url=f"http://127.0.0.1:{primary.listen_port}",
            name="s1", secret=secret, database_url=urls["tracking"],
            broker_url=urls["broker"], extra=SECONDARY_TUNING)).require_secondary()
        engine = make_engine(secondary.database_url)
        stack.callback(engine.dispose)
        create_registry_table(engine, "widget")  # the type's tracking migration

        def widgets() -> dict[str, Any]:
            return dict(secondary_status(engine, None, "s1")["types"]["widget"])

        daemon = SecondaryDaemon(secondary)
        with _serve(primary, primary_engine), _run(daemon), ExitStack() as workers:
            if backend == "postgres":
                workers.enter_context(_workers(daemon))
            _wait(lambda: widgets()["synced"] == 1, "the widget to sync")
            _wait(lambda: widgets()["verified"] == 1, "the widget to be verified")
        report = secondary_status(engine, None, "s1")
    assert (secondary.mirror_root / "widgets" / "team" / "w1.bin").read_bytes() == data
    out = io.StringIO()
    secondary_view.render(Console(file=out, width=80), report)
    assert "widget" in out.getvalue()
