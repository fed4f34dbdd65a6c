"""A secondary added to a primary that already has 20,000 items (twenty catalog pages)
registers them all, with progress visible, and without any event for them. (At
100,000 this was the suite's longest test, 2 minutes under the suite's load, for the
same pages; bench/scale.py measures backfill at scale.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select

from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.models import CatalogItem, Event
from geo_sync.secondary.backfill import backfill
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import open_runtime
from geo_sync.tracking.models import CursorRow
from replicators.artifact import ArtifactRegistry
from replicators.job_log import JobLogRegistry
from tests.services import temporary_database
from tests.sites import primary_site, secondary_site

# The heaviest tests outside the fault matrix run one after another on one xdist worker
# (make test), so two of them never compete for the two cores.
pytestmark = pytest.mark.xdist_group("bench")

ITEMS = 20_000


def test_backfill_registers_twenty_thousand_existing_items(tmp_path: Path) -> None:
    with temporary_database() as purl, temporary_database("geo_tracking") as turl, \
            primary_site(tmp_path / "primary", purl) as primary:
        now = utcnow()
        rows = [{"replicable_type": "artifact" if n % 4 else "job_log",
                 "record_id": str(n), "path": f"p/{n // 1000}/{n}.bin", "size": n,
                 "checksum": None, "updated_at": now} for n in range(ITEMS)]
        with write_transaction(primary.engine) as conn:
            conn.execute(insert(CatalogItem), rows)
            conn.execute(delete(Event))  # no event exists for any of them
        secondary = secondary_site(tmp_path / "secondary", primary, turl)
        runtime = open_runtime(secondary.settings)
        try:
            LogCursor(runtime).run_once(wait=0)
            with runtime.engine.connect() as conn:
                artifacts = conn.execute(select(func.count()).select_from(ArtifactRegistry)
                                         ).scalar_one()
                logs = conn.execute(select(func.count()).select_from(JobLogRegistry)
                                    ).scalar_one()
                pending = conn.execute(select(func.count()).where(
                    ArtifactRegistry.state == "pending")).scalar_one()
                progress = conn.execute(select(CursorRow.backfill_progress)).scalar_one()
                needs = conn.execute(select(CursorRow.backfill_required)).scalar_one()
            # Again, watching progress: the type's total (counted with its first page
            # only) is shown with every page after it.
            seen: list[tuple[str, int, int]] = []
            backfill(runtime, runtime.client, progress=lambda *step: seen.append(step))
            with runtime.engine.connect() as conn:
                again = conn.execute(select(func.count()).select_from(ArtifactRegistry)
                                     ).scalar_one()
        finally:
            runtime.close()
            secondary.engine.dispose()
    assert artifacts + logs == ITEMS
    assert logs == ITEMS // 4
    assert pending == artifacts, "every backfilled item waits for a worker"
    assert progress == f"done: {ITEMS} items"
    assert needs is False
    assert again == artifacts, "a second backfill adds nothing"
    totals: dict[str, set[int]] = {}
    for name, _done, total in seen:
        totals.setdefault(name, set()).add(total)
    assert totals == {"artifact": {artifacts}, "job_log": {logs}, "repository": {0}}, totals
    # A step a page of 1,000 (and one for the empty page that ends an exact multiple).
    assert sorted({done for name, done, _total in seen if name == "artifact"}) == \
        list(range(1000, artifacts + 1, 1000))
