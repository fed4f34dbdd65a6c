"""What one scheduler pass costs with a million registry rows.

    .venv/bin/python -m bench.scheduler_pass [--rows 1000000] [--passes 30] [--json]
        [--output docs/benchmarks.md]

The artifact registry on PostgreSQL is filled with generate_series: 80 % synced
and verified (verified over the last day, so the paced re-verification has due
rows to take), 10 % pending and never handed out, 1 % failed with a retry time in
the future and some of those blocked on the primary, 100 started under a live
lease (workers busy), 0.1 % missing on the primary. Then ``Scheduler.run_once`` runs in this
process (the in-process broker: the figure is the tracking DB's work, not
Redis's) until the first pass has handed out as much work as the concurrency
limit allows; the passes after it are timed one by one, as the scheduler loop
runs them. Two configurations, one after the other on the same rows:

- between sweeps: the cheap verification sweep has finished its round (one chunk
  of the whole table, in the untimed first pass) and waits for the next;
- during a sweep: each pass also stats one chunk (5,000 copies, the default) of
  the verified copies, which the sweep pays by design, whatever the table size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.logging import configure_logging
from geo_sync.secondary import bootstrap
from geo_sync.secondary.runtime import open_runtime
from geo_sync.secondary.scheduler import Scheduler
from tests.services import temporary_database
from tests.sites import primary_site, secondary_site

FILL = """
INSERT INTO geo_artifact_registry
  (record_id, path, state, generation, tombstone, retry_count, retry_at, missing_on_primary,
   created_at, updated_at, verification_state, verification_retry_count, mismatch_count,
   verified_at, last_error, blocked_on, claimed_by, lease_until, enqueued_at)
SELECT 'r' || n, 'p/' || (n / 1000) || '/' || n || '.bin',
       CASE WHEN n <= 100 THEN 'started' WHEN n % 100 = 0 THEN 'failed'
            WHEN n % 10 = 1 THEN 'pending' ELSE 'synced' END,
       1, false, 0,
       CASE WHEN n % 100 = 0 THEN now() + interval '1 hour' END,
       n % 1000 = 0, now(), now(),
       CASE WHEN n % 10 = 1 OR n <= 100 OR n % 100 = 0 THEN 'pending' ELSE 'succeeded' END, 0, 0,
       CASE WHEN n % 10 = 1 OR n <= 100 OR n % 100 = 0 THEN NULL
            ELSE now() - (n % 86400) * interval '1 second' END,
       CASE WHEN n % 100 = 0 THEN 'primary answered 500' END,
       CASE WHEN n % 300 = 0 THEN 'primary' END,
       CASE WHEN n <= 100 THEN 'bench-worker' END,
       CASE WHEN n <= 100 THEN now() + interval '1 hour' END,
       CASE WHEN n <= 100 THEN now() END
FROM generate_series(1, :rows) AS n
"""


READ = text("SELECT coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0) "
            "FROM pg_stat_user_tables WHERE relname LIKE 'geo_%_registry'")


def rows_read(engine: Engine) -> int:
    """Registry rows read so far (sequential and through indexes), by PostgreSQL's own
    count: unlike time, it does not depend on how loaded the machine is."""
    time.sleep(1.5)  # backends publish their counters at most once a second
    with engine.connect() as conn:
        return int(conn.execute(READ).scalar_one())


def timed_passes(scheduler: Scheduler, passes: int) -> tuple[list[float], float, float]:
    """Pass times after the first, then statements and registry rows read per pass."""
    engine = scheduler.runtime.engine
    scheduler.run_once()  # hands out work up to the limits, starts the sweep
    times = []
    before = rows_read(engine)
    for _ in range(passes):
        started = time.perf_counter()
        scheduler.run_once()
        times.append(time.perf_counter() - started)
    read = (rows_read(engine) - before) / passes
    statements = [0]

    def count(*_: object) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    scheduler.run_once()  # counted, not timed
    event.remove(engine, "before_cursor_execute", count)
    return times, statements[0], read


def run(rows: int, passes: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url, \
            primary_site(Path(tmp) / "p", None, serve=False) as primary:
        configurations = {"between sweeps": rows, "during a sweep (5,000-copy chunk)": 5000}
        for number, (name, chunk) in enumerate(configurations.items()):
            site = secondary_site(Path(tmp) / f"s{number}", primary, url,
                                  verification_sweep_chunk=chunk,
                                  verification_sweep_interval_seconds=3600.0,
                                  reverify_after_seconds=86400.0)
            if number == 0:
                with write_transaction(site.engine) as conn:
                    conn.execute(text(FILL), {"rows": rows})
                    conn.execute(text("ANALYZE geo_artifact_registry"))
            runtime = open_runtime(site.settings)
            scheduler = Scheduler(runtime, bootstrap.setup(site.settings))
            times, statements, read = timed_passes(scheduler, passes)
            runtime.close()
            site.engine.dispose()
            results.append({"tool": name, "rows": rows, "passes": passes,
                            "median_ms": round(statistics.median(times) * 1000, 2),
                            "p90_ms": round(sorted(times)[int(len(times) * 0.9)] * 1000, 2),
                            "max_ms": round(max(times) * 1000, 2),
                            "statements": statements, "rows_read": round(read)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=30)
    add_output_argument(parser)
    args = parser.parse_args()
    configure_logging("warning", "json")  # as deployed: no debug lines on the timed path
    results = run(args.rows, args.passes)
    table = "\n".join([
        "| pass | registry rows | passes | median ms | p90 ms | max ms | statements "
        "| registry rows read |", "|---|---|---|---|---|---|---|---|"] + [
        f"| {r['tool']} | {r['rows']:,} | {r['passes']} | {r['median_ms']:.1f} | "
        f"{r['p90_ms']:.1f} | {r['max_ms']:.1f} | {r['statements']} | {r['rows_read']:,} |"
        for r in results])
    print(json.dumps(results, indent=2) if args.json else table)
    append_section(args.output, "Scheduler pass at scale", "bench.scheduler_pass",
                   "PostgreSQL tracking DB, `Scheduler.run_once` in process (in-process "
                   "broker), steady state after the first pass", table)


if __name__ == "__main__":
    main()
