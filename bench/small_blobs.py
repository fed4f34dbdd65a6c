r"""Many small artifacts: geo-sync against an rsync daemon on loopback and
`rclone copy` over HTTP, copying the same primary directory in the same run.

    .venv/bin/python -m bench.small_blobs [--items 10000] [--size 16384] \
        [--output docs/benchmarks.md]

geo-sync: PostgreSQL (primary and tracking DBs), Redis, `primary serve` (one
process per core), `secondary run` and `geo-sync worker` processes, measured
twice, with the workers started and idle before the clock as an rsync daemon
is: (1) everything running when the items are published on the primary in one
transaction, clock from its commit (events, cursor, scheduler, transfer) to the
last item synced; (2) `secondary run` started on a full catalog, clock from its
backfill's first registry row (the registry fill included) to the last synced. Items
travel in blob batches (one request, one catalog query per batch), are checked
against the primary's sha256 as they stream (which verifies them), written as temp
files that are fsynced together and renamed, with one directory fsync per
directory and one registry update per batch. rsync and rclone copy the primary's
artifact directory from a daemon / HTTP server started for the run. Every copy
is compared byte for byte with the source afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.data import artifact_set
from bench.harness import (
    artifact_changes,
    same_tree,
    served_primary_with_artifacts,
    time_live_sync,
    time_worker_sync_phases,
)
from bench.peers import debian_tool
from bench.report import add_output_argument, append_section, peer_table
from tests.sites import free_port, wait_for_port

THREADS = 4  # rclone's default --transfers is 4: the same concurrency
#: Rows per worker message at most (fewer when few are due): a worker fetches them in
#: one blob batch.
BATCH = 250


@contextmanager
def _server(args: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield
    finally:
        proc.terminate()
        proc.wait()


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def time_rsync(source: Path, scratch: Path, extra: list[str]) -> float:
    rsync = debian_tool("rsync")
    port = free_port()
    conf = scratch / "rsyncd.conf"
    conf.write_text(f"use chroot = no\n[artifacts]\npath = {source}\nread only = yes\n"
                    "uid = root\ngid = root\n")
    dest = scratch / f"rsync{len(extra)}"
    with _server([rsync, "--daemon", "--no-detach", f"--config={conf}", f"--port={port}",
                  "--address=127.0.0.1"], port):
        seconds = _timed([rsync, "-a", *extra, f"rsync://127.0.0.1:{port}/artifacts/",
                          f"{dest}/"])
    same_tree(source, dest, "rsync")
    return seconds


def time_rclone(source: Path, scratch: Path) -> float:
    rclone = debian_tool("rclone")
    port = free_port()
    conf = scratch / "rclone.conf"
    conf.touch()
    dest = scratch / "rclone"
    with _server([rclone, "--config", str(conf), "serve", "http", str(source), "--addr",
                  f"127.0.0.1:{port}"], port):
        seconds = _timed([rclone, "--config", str(conf), "copy", ":http:", str(dest),
                          "--http-url", f"http://127.0.0.1:{port}/",
                          "--transfers", str(THREADS)])
    same_tree(source, dest, "rclone")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    add_output_argument(parser)
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    files = artifact_set(args.items, args.size)
    with served_primary_with_artifacts(files, published=False) as primary, \
            tempfile.TemporaryDirectory() as tmp:
        source = primary.storage("artifacts")

        def check(mirror: Path) -> None:
            same_tree(source, mirror, "geo-sync")

        changes = artifact_changes(primary, list(files))
        rows.append((f"geo-sync, running, {args.processes} worker process(es) x {THREADS} "
                     "threads: from publishing to the last synced",
                     time_live_sync(primary, changes, batch_size=BATCH, threads=THREADS,
                                    processes=args.processes, check=check)))
        filled, synced = time_worker_sync_phases(
            primary, batch_size=BATCH, threads=THREADS, processes=args.processes, check=check)
        rows.append((f"geo-sync, running, {args.processes} worker process(es) x {THREADS} "
                     f"threads: backfill from the catalog (fill {filled:.1f} s) and sync",
                     synced))
        scratch = Path(tmp)
        rows.append(("rsync -a from an rsync daemon", time_rsync(source, scratch, [])))
        rows.append(("rsync -a --fsync from an rsync daemon (like for like: durable)",
                     time_rsync(source, scratch, ["--fsync"])))
        rows.append((f"rclone copy over HTTP (rclone serve http), --transfers {THREADS}",
                     time_rclone(source, scratch)))
    table = peer_table(rows, args.items, "items", digits=3)
    print(table)
    append_section(args.output, f"{args.items} artifacts of {args.size} bytes",
                   "bench.small_blobs",
                   "loopback, PostgreSQL + Redis, every copy compared with the source",
                   table)


if __name__ == "__main__":
    main()
