r"""Resident memory of the process running the log cursor while it applies a long
event log: the real `geo-sync secondary run` process (cursor and scheduler), its
RSS sampled from /proc as the events go by.

    .venv/bin/python -m bench.cursor_memory [--events 1000000] [--output docs/benchmarks.md]

The primary (PostgreSQL, `primary serve`) gets N events once the secondary has
backfilled: artifact created/deleted and job log created/appended over 50,000
items, written straight into the event table in transactions of 100,000 (as
many writers committing would). The tracking DB is PostgreSQL; the broker is
Redis with no worker attached, so the scheduler's sends stay bounded by the
per-type concurrency. Memory that grew with the number of events (a cache, a
list of applied ids) would show as RSS rising row after row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import select, text

from bench.harness import running_secondary
from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.tracking.models import CursorRow
from tests.services import temporary_database
from tests.sites import primary_site

CHUNK = 100_000
ITEMS = 50_000
# One row of the mix per event number: (type, event) by n % 4.
INSERT = text("""
INSERT INTO geo_events (txid, replicable_type, event, record_id, path, payload, created_at)
SELECT pg_current_xact_id()::text::bigint,
       CASE WHEN n % 4 < 2 THEN 'artifact' ELSE 'job_log' END,
       (ARRAY['created', 'deleted', 'created', 'appended'])[n % 4 + 1],
       'r' || (n % :items), 'bench/' || (n % :items) || '.bin',
       json_build_object('size', n), now()
FROM generate_series(:low, :high - 1) AS n
""")


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    add_output_argument(parser)
    args = parser.parse_args()
    checkpoints = sorted({0, args.events // 10, args.events // 2, args.events})
    samples: list[tuple[int, int, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as url, \
            primary_site(Path(tmp) / "p", url) as primary, \
            running_secondary(primary, poll_wait_seconds=1) as secondary:
        pid = secondary.processes[0].pid

        def applied() -> int | None:
            with secondary.site.engine.connect() as conn:
                row = conn.execute(select(CursorRow.events_applied, CursorRow.backfill_required)
                                   .where(CursorRow.id == 1)).first()
            return None if row is None or row.backfill_required else int(row.events_applied)

        while applied() is None:
            time.sleep(0.1)
        started = time.monotonic()
        samples.append((0, *rss_kib(pid), 0.0))  # backfilled, no event applied yet
        for low in range(0, args.events, CHUNK):
            with write_transaction(primary.engine) as conn:
                conn.execute(INSERT, {"items": ITEMS, "low": low,
                                      "high": min(low + CHUNK, args.events)})
        for checkpoint in checkpoints[1:]:
            while (done := applied() or 0) < checkpoint:
                time.sleep(0.2)
            samples.append((done, *rss_kib(pid), time.monotonic() - started))
    table = ["| events applied | RSS MiB | peak RSS MiB | seconds since writing began |",
             "|---|---|---|---|"]
    table += [f"| {done:,} | {rss / 1024:.1f} | {peak / 1024:.1f} | {at:.0f} |"
              for done, rss, peak, at in samples]
    print("\n".join(table))
    append_section(args.output, f"Cursor memory over {args.events:,} events",
                   "bench.cursor_memory",
                   "`secondary run` process (cursor + scheduler), PostgreSQL + Redis, "
                   "no worker", "\n".join(table))


if __name__ == "__main__":
    main()
