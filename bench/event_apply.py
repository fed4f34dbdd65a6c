"""Events per second the log cursor applies to the tracking database.

    .venv/bin/python -m bench.event_apply [--events 100000] [--output docs/benchmarks.md]

A served primary on PostgreSQL holds N committed events (artifact created/deleted
over N/2 items, so half the events create rows and half update them); a
secondary with its tracking DB on PostgreSQL has already backfilled (empty
catalog). The clock runs over the cursor's run_once loop until it has applied
every event: feed HTTP pages, registry writes and cursor commits, as in
production.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from bench.report import add_output_argument, append_section
from geo_sync.db import utcnow, write_transaction
from geo_sync.primary.models import Event
from geo_sync.secondary.cursor import LogCursor
from geo_sync.secondary.runtime import open_runtime
from tests.services import temporary_database
from tests.sites import primary_site, secondary_site

CHUNK = 10_000


def run(events: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as purl, \
            temporary_database("geo_tracking") as turl, \
            primary_site(Path(tmp) / "p", purl) as primary:
        secondary = secondary_site(Path(tmp) / "s", primary, turl)
        runtime = open_runtime(secondary.settings)
        cursor = LogCursor(runtime)
        cursor.run_once(wait=0)  # backfill: moves the cursor to the head
        now = utcnow()
        with write_transaction(primary.engine) as conn:
            txid = conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint"
                                        ).scalar_one()
            for start in range(0, events, CHUNK):
                conn.execute(insert(Event), [
                    {"txid": txid, "replicable_type": "artifact",
                     "event": "created" if n % 2 == 0 else "deleted",
                     "record_id": f"r{n // 2}", "path": f"p/{n // 2}.bin",
                     "payload": {"size": n}, "created_at": now}
                    for n in range(start, min(start + CHUNK, events))])
        applied = 0
        started = time.perf_counter()
        while applied < events:
            applied += cursor.run_once(wait=0)
        elapsed = time.perf_counter() - started
        runtime.close()
        secondary.engine.dispose()
    return elapsed, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    add_output_argument(parser)
    args = parser.parse_args()
    elapsed, applied = run(args.events)
    line = (f"| {applied} | {elapsed:.2f} | {applied / elapsed:.0f} |")
    table = "| events | seconds | events/s |\n|---|---|---|\n" + line
    print(table)
    append_section(args.output, "Event apply rate", "bench.event_apply",
                   "PostgreSQL primary and tracking DB, pages of 500 over the real Geo API",
                   table)


if __name__ == "__main__":
    main()
