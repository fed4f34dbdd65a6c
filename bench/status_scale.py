"""`geo-sync status --json` time with a large registry.

    .venv/bin/python -m bench.status_scale [--rows 1000000] [--output docs/benchmarks.md]

The artifact registry is filled on PostgreSQL with generate_series (a mix of
states, some failed with errors, some missing on the primary); the command runs
as an operator would run it, as a process, best of three. The primary is not
running, so the figure excludes its /status round trip (the command says so).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from tests.services import temporary_database
from tests.sites import GEO_SYNC, primary_site, secondary_site

ROUNDS = 3
FILL = """
INSERT INTO geo_artifact_registry
  (record_id, path, state, generation, tombstone, retry_count, missing_on_primary,
   created_at, updated_at, verification_state, verification_retry_count, mismatch_count,
   last_error)
SELECT 'r' || n, 'p/' || (n / 1000) || '/' || n || '.bin',
       CASE WHEN n % 100 = 0 THEN 'failed' WHEN n % 10 = 0 THEN 'pending' ELSE 'synced' END,
       1, false, 0, n % 1000 = 0, now(), now(),
       CASE WHEN n % 3 = 0 THEN 'pending' ELSE 'succeeded' END, 0, 0,
       CASE WHEN n % 100 = 0 THEN 'primary answered 500' END
FROM generate_series(1, :rows) AS n
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    add_output_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url, \
            primary_site(Path(tmp) / "p", None, serve=False) as primary:
        secondary = secondary_site(Path(tmp) / "s", primary, url)
        with write_transaction(secondary.engine) as conn:
            conn.execute(text(FILL), {"rows": args.rows})
            conn.execute(text("ANALYZE geo_artifact_registry"))
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            # status exits with its verdict (no workers run here): the JSON must parse.
            done = subprocess.run([GEO_SYNC, "--config", str(secondary.config), "status",
                                   "--json"], check=False, capture_output=True)
            json.loads(done.stdout)
            times.append(time.perf_counter() - started)
        secondary.engine.dispose()
    table = ("| registry rows | seconds (best of 3) |\n|---|---|\n"
             f"| {args.rows} | {min(times):.2f} |")
    print(table)
    append_section(args.output, "Status at scale", "bench.status_scale",
                   "PostgreSQL tracking DB, the whole command as a process (including "
                   "Python start-up), primary not running", table)


if __name__ == "__main__":
    main()
