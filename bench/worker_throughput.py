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

from bench.data import artifact_set
from bench.harness import served_primary_with_artifacts, time_worker_sync
from bench.report import add_output_argument, append_section

THREADS = 4


def run_once(items: int, size: int, batch_size: int) -> float:
    """Seconds for one worker process to sync ``items`` artifacts of ``size`` bytes."""
    with served_primary_with_artifacts(artifact_set(items, size)) as primary:
        return time_worker_sync(primary, batch_size=batch_size, threads=THREADS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--batches", default="1,25")
    add_output_argument(parser)
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
    append_section(args.output, "Worker throughput: small artifacts per worker process",
                   "bench.worker_throughput",
                   f"{args.items} artifacts of {args.size} bytes, one worker process with "
                   f"{THREADS} threads, PostgreSQL + Redis", "\n".join(table))


if __name__ == "__main__":
    main()
