r"""Many small artifacts: geo-sync against an rsync daemon on loopback and
`rclone copy` over HTTP, copying the same primary directory in the same run.

    .venv/bin/python -m bench.small_blobs [--items 10000] [--size 16384] \
        [--output docs/benchmarks.md]

geo-sync: PostgreSQL (primary and tracking DBs), Redis, `primary serve`,
`secondary run` and `geo-sync worker` processes; the registry is filled by a
backfill first, and the clock runs from starting the workers to the last item
synced (each item: one HTTP request, sha256 checked against the primary's,
fsync, rename, one registry transition). rsync and rclone copy the primary's
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
from bench.harness import same_tree, served_primary_with_artifacts, time_worker_sync
from bench.peers import debian_tool
from bench.report import add_output_argument, append_section, peer_table
from tests.sites import free_port, wait_for_port

THREADS = 4  # rclone's default --transfers is 4: the same concurrency


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
    add_output_argument(parser)
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    with served_primary_with_artifacts(artifact_set(args.items, args.size)) as primary, \
            tempfile.TemporaryDirectory() as tmp:
        source = primary.storage("artifacts")

        def check(mirror: Path) -> None:
            same_tree(source, mirror, "geo-sync")

        for processes in (1, 2):
            rows.append((f"geo-sync, {processes} worker process(es) x {THREADS} threads",
                         time_worker_sync(primary, batch_size=25, threads=THREADS,
                                          processes=processes, check=check)))
        scratch = Path(tmp)
        rows.append(("rsync -a from an rsync daemon", time_rsync(source, scratch, [])))
        rows.append(("rsync -a --fsync from an rsync daemon",
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
