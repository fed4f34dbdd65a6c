"""Items per second one `geo-sync worker` process completes for small artifacts,
with one item per dramatiq message against batches per message.

    .venv/bin/python -m bench.worker_throughput [--items 3000] [--size 16384]

PostgreSQL (primary and tracking DBs), Redis broker, `primary serve`,
`secondary run` (scheduler) and one `geo-sync worker --processes 1 --threads 4`,
all real processes. The registry is filled by a backfill first; the clock runs
from starting the worker to the last item synced.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from geo_sync.db import write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.secondary.models import ArtifactRegistry
from tests.deployment import flush_queue, unique_queue
from tests.services import REDIS_URL, temporary_database
from tests.sites import GEO_SYNC, primary_site, secondary_site

THREADS = 4


def _synced(engine: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).where(
            ArtifactRegistry.state == "synced")).scalar_one())


def run_once(items: int, size: int, batch_size: int) -> float:
    """Seconds for one worker process to sync ``items`` artifacts of ``size`` bytes."""
    queue = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as purl, \
            temporary_database("geo_tracking") as turl, \
            primary_site(Path(tmp) / "p", purl) as primary:
        root = primary.storage("artifacts")
        with write_transaction(primary.engine) as conn:
            for n in range(items):
                data = os.urandom(size)
                (root / f"{n:06d}.bin").write_bytes(data)
                publish(conn, Change("artifact", "created", f"{n:06d}.bin", size=size,
                                     checksum=hashlib.sha256(data).hexdigest()))
        secondary = secondary_site(
            Path(tmp) / "s", primary, turl, broker_url=REDIS_URL, queue_name=queue,
            batch_size=batch_size, scheduler_interval_seconds=0.2,
            concurrency={"artifact": 4000, "repository": 8, "job_log": 100})
        env = dict(os.environ)
        run = subprocess.Popen([GEO_SYNC, "--config", str(secondary.config), "secondary", "run"],
                               stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        try:
            with secondary.engine.connect() as conn:
                while conn.execute(select(func.count()).select_from(ArtifactRegistry)
                                   ).scalar_one() < items:
                    time.sleep(0.1)
                    conn.commit()
            started = time.monotonic()
            worker = subprocess.Popen(
                [GEO_SYNC, "--config", str(secondary.config), "worker", "--processes", "1",
                 "--threads", str(THREADS)], stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                while _synced(secondary.engine) < items:
                    time.sleep(0.05)
                elapsed = time.monotonic() - started
            finally:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait()
        finally:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait()
            secondary.engine.dispose()
            flush_queue(queue)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--batches", default="1,25")
    parser.add_argument("--output", type=Path, help="append a markdown section here")
    args = parser.parse_args()
    rows = []
    for batch_size in (int(b) for b in args.batches.split(",")):
        seconds = run_once(args.items, args.size, batch_size)
        rows.append((batch_size, seconds, args.items / seconds))
        print(f"batch {batch_size:>4}: {seconds:7.2f} s  {args.items / seconds:8.1f} items/s",
              flush=True)
    base = rows[0][2]
    table = ["| items per message | seconds | items/s | vs first row |", "|---|---|---|---|"]
    table += [f"| {b} | {s:.2f} | {r:.0f} | {r / base:.2f}x |" for b, s, r in rows]
    print("\n".join(table))
    if args.output:
        command = " ".join([Path(sys.executable).name, "-m", "bench.worker_throughput",
                            *sys.argv[1:]])
        with args.output.open("a") as handle:
            handle.write(
                f"\n## Worker throughput: small artifacts per worker process\n\n"
                f"`{command}` — {args.items} artifacts of {args.size} bytes, one worker "
                f"process with {THREADS} threads, PostgreSQL + Redis, on "
                f"{platform.machine()} with {os.cpu_count()} cores, "
                f"{time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
