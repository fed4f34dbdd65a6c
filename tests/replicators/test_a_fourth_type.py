"""A new data type is one class: a blob type defined only here is published, synced,
verified and shown in `status`, with no product file touched for it.

Embedded mode in this process (SQLite, in-process broker), because a type defined in
tests/ exists only in the process that imported it; the tracking table comes from the
one helper a migration for a new type would call.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from geo_sync.cli import secondary_view
from geo_sync.db import make_engine, write_transaction
from geo_sync.demo import SECONDARY_TUNING, _run, _serve, free_port
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.secondary.daemon import SecondaryDaemon
from geo_sync.secondary.site import init_secondary
from geo_sync.secondary.status import secondary_status
from geo_sync.settings import load_settings
from geo_sync.tracking.models import Registry, create_registry_table, registry_model
from replicators.blob import BlobReplicator
from replicators.registry import REPLICATORS


class WidgetReplicator(BlobReplicator):
    """A fourth blob type: everything it needs is this class."""

    name: ClassVar[str] = "widget"
    events: ClassVar[tuple[str, ...]] = ("created", "deleted")
    storage_dir: ClassVar[str] = "widgets"
    registry: ClassVar[Registry] = registry_model(name)


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("size", [0, 1, 70_000])
def test_a_blob_type_defined_only_in_tests_is_published_synced_verified_and_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setitem(REPLICATORS, WidgetReplicator.name, WidgetReplicator)
    primary = load_settings(init_primary(tmp_path / "primary", listen_port=free_port())
                            ).require_primary()
    primary_engine = make_engine(primary.database_url)
    with write_transaction(primary_engine) as conn:
        secret = add_secondary(conn, "s1")
    data = bytes(range(256)) * (size // 256) + b"w" * (size % 256)
    blob = primary.storage_root / "widgets" / "team" / "w1.bin"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    with write_transaction(primary_engine) as conn:
        publish(conn, Change("widget", "created", "team/w1.bin", size=size,
                             checksum=hashlib.sha256(data).hexdigest()))

    secondary = load_settings(init_secondary(
        tmp_path / "secondary", primary_url=f"http://127.0.0.1:{primary.listen_port}",
        name="s1", secret=secret, extra=SECONDARY_TUNING)).require_secondary()
    engine = make_engine(secondary.database_url)
    create_registry_table(engine, "widget")

    def widgets() -> dict[str, Any]:
        return dict(secondary_status(engine, None, "s1")["types"]["widget"])

    try:
        with _serve(primary, primary_engine), _run(SecondaryDaemon(secondary)):
            _wait(lambda: widgets()["synced"] == 1, "the widget to sync")
            _wait(lambda: widgets()["verified"] == 1, "the widget to be verified")
        report = secondary_status(engine, None, "s1")
    finally:
        engine.dispose()
        primary_engine.dispose()
    assert (secondary.mirror_root / "widgets" / "team" / "w1.bin").read_bytes() == data
    out = io.StringIO()
    secondary_view.render(Console(file=out, width=80), report)
    assert "widget" in out.getvalue()
