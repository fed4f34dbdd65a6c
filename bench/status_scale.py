"""`geo-sync status --json` time with a large registry, and `geo-sync --help`.

    .venv/bin/python -m bench.status_scale [--rows 1000000] [--json]
        [--output docs/benchmarks.md]

The artifact registry is filled on PostgreSQL with generate_series (a mix of
states, some failed with errors, some missing on the primary); each command runs
as an operator would run it, as a process, best of five, one after the other. The
primary is not running, so the figure excludes its /status round trip (the
command says so). Next to the wall time, the CPU time the process used (user +
system), which a loaded machine inflates much less than the wall time; and the
report's queries alone (``secondary_status`` in this process, best of five), the
only part whose cost could grow with the registry. And `status --json` once more with
`secondary run` running, which then computes the report and the command prints it
(geo_sync.local_status), with the daemon's CPU per answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.event_apply import cpu_seconds
from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.local_status import ask
from geo_sync.secondary.status import secondary_status
from tests.deployment import flush_queue, unique_queue
from tests.services import REDIS_URL, temporary_database
from tests.sites import GEO_SYNC, primary_site, secondary_site

ROUNDS = 5
#: Seconds the daemon's CPU is sampled without status requests (its background rate).
IDLE_SECONDS = 5.0
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


def timed(command: list[str], check: bool = True) -> tuple[float, float, str]:
    """Best of ROUNDS: (wall seconds, CPU seconds of that run, its stdout)."""
    best: tuple[float, float, str] | None = None
    for _ in range(ROUNDS):
        before = os.times()
        started = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = os.times()
        if check and done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
        cpu = (after.children_user - before.children_user
               + after.children_system - before.children_system)
        if best is None or wall < best[0]:
            best = (wall, cpu, done.stdout)
    assert best is not None
    return best


def answered_by_daemon(config: Path, rows: int) -> list[dict[str, Any]]:
    """`status --json` and `check --json` with `secondary run` running (primary down, no
    worker): the daemon computes the answer and the command prints it
    (geo_sync.local_status). The daemon's CPU per answer is measured from /proc over
    the same rounds, less its idle rate."""
    daemon = subprocess.Popen([GEO_SYNC, "--config", str(config), "secondary", "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        deadline = time.monotonic() + 120
        while ask(config) is None:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("`secondary run` did not answer status on its socket")
            time.sleep(0.2)
        # The daemon's own work meanwhile (scheduler passes, the cursor retrying the
        # primary) is not the answers': measured idle first, then taken off.
        idle_started, idle_before = time.perf_counter(), cpu_seconds(daemon.pid)
        time.sleep(IDLE_SECONDS)
        idle_rate = ((cpu_seconds(daemon.pid) - idle_before)
                     / (time.perf_counter() - idle_started))
        for command in ("status", "check"):
            started, before = time.perf_counter(), cpu_seconds(daemon.pid)
            wall, cpu, out = timed([GEO_SYNC, "--config", str(config), command, "--json"],
                                   check=False)
            busy = cpu_seconds(daemon.pid) - before
            daemon_cpu = max(0.0, busy - idle_rate * (time.perf_counter() - started))
            document = json.loads(out)
            assert document["answered_by"]["pid"] == daemon.pid, document["answered_by"]
            results.append({
                "tool": f"geo-sync {command} --json, answered by a running `secondary run`",
                "rows": rows, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                "daemon_cpu_seconds": round(daemon_cpu / ROUNDS, 3)})
            if command == "status":
                assert document["types"]["artifact"]["total"] == rows, document["types"]
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
    return results


def run(rows: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp, temporary_database("geo_tracking") as url, \
            primary_site(Path(tmp) / "p", None, serve=False) as primary:
        # Production mode: a Redis queue no worker reads, so that the daemon of the third
        # row runs its cursor and scheduler only (embedded workers would be retrying
        # 100,000 items against the stopped primary in the same process).
        queue = unique_queue()
        secondary = secondary_site(Path(tmp) / "s", primary, url, broker_url=REDIS_URL,
                                   queue_name=queue)
        with write_transaction(secondary.engine) as conn:
            conn.execute(text(FILL), {"rows": rows})
            conn.execute(text("ANALYZE geo_artifact_registry"))
        results = []
        help_wall, help_cpu, _ = timed([GEO_SYNC, "--help"])
        results.append({"tool": "geo-sync --help", "rows": rows,
                        "seconds": round(help_wall, 3), "cpu_seconds": round(help_cpu, 3)})
        # status exits with its verdict (no workers run here): the JSON must parse.
        wall, cpu, out = timed([GEO_SYNC, "--config", str(secondary.config), "status",
                                "--json"], check=False)
        report = json.loads(out)
        assert report["types"]["artifact"]["total"] == rows, report["types"]["artifact"]
        results.append({"tool": "geo-sync status --json", "rows": rows,
                        "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)})
        wall, cpu, out = timed([GEO_SYNC, "--config", str(secondary.config), "check",
                                "--json"], check=False)
        assert json.loads(out)["role"] == "secondary"
        results.append({"tool": "geo-sync check --json", "rows": rows,
                        "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)})
        results.extend(answered_by_daemon(secondary.config, rows))
        # The part that depends on the registry's size: the report's queries, in process.
        queries = []
        for _ in range(ROUNDS):
            started, cpu_before = time.perf_counter(), time.process_time()
            secondary_status(secondary.engine, None, secondary.settings.name)
            queries.append((time.perf_counter() - started, time.process_time() - cpu_before))
        wall, cpu = min(queries)
        results.append({"tool": "its queries (secondary_status() in process)", "rows": rows,
                        "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)})
        secondary.engine.dispose()
        flush_queue(queue)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    add_output_argument(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = run(args.rows)
    load_after = os.getloadavg()
    table = "\n".join(["| command | registry rows | seconds (best of 5) | CPU seconds "
                       "| the daemon's CPU seconds per answer |", "|---|---|---|---|---|"] + [
        f"| {r['tool']} | {r['rows']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
        + (f"{r['daemon_cpu_seconds']:.2f} |" if "daemon_cpu_seconds" in r else "— |")
        for r in results])
    print(json.dumps(results, indent=2) if args.json else table)
    append_section(args.output, "Status at scale", "bench.status_scale",
                   "PostgreSQL tracking DB, each command as a process (including Python "
                   "start-up), primary not running, load average (1/5/15 min) "
                   f"{_load(load_before)} before and {_load(load_after)} after", table)


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.1f}" for value in load)


if __name__ == "__main__":
    main()
