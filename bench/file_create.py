r"""File creation on the benchmarks' filesystem, fresh and right after many deletions.

    .venv/bin/python -m bench.file_create [--files 10000] [--deleted 50000] \
        [--output docs/benchmarks.md] [--json]

Every copying benchmark creates one file per item (geo-sync and rsync both write a
temp file and rename it). On ext4 mounted without a journal, as this machine's root
filesystem is, the inode allocator skips every inode freed in the last 60 s (360 s
while its inode-table block is still dirty), looking each one up on the way
(``recently_deleted()`` in fs/ext4/ialloc.c): after a run deletes tens of thousands
of files, creating a file costs CPU in proportion to them. With a journal the check
is not made. Rows, in one directory under TMPDIR (point TMPDIR at another filesystem
to measure that one):

1. create ``--files`` files of 4 KiB (open O_EXCL, write, close) in a fresh tree;
2. delete ``--deleted`` other files, then at once create ``--files`` more.

The filesystem's type and whether it has a journal go in the section (as in every
benchmark's). Only the creating loop is timed; making and deleting the other files is not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import add_output_argument, append_section

SIZE = 4096
PER_DIRECTORY = 100


def _create(root: Path, count: int, data: bytes) -> float:
    """Seconds to create ``count`` files of ``data`` under ``root``, 100 to a directory."""
    directories = [root / f"{n:05d}" for n in range(0, count, PER_DIRECTORY)]
    for directory in directories:
        directory.mkdir(parents=True)
    started = time.perf_counter()
    for n in range(count):
        fd = os.open(directories[n // PER_DIRECTORY] / f"{n}.bin",
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files created per row")
    parser.add_argument("--deleted", type=int, default=50_000,
                        help="files deleted just before the second row")
    add_output_argument(parser)
    args = parser.parse_args()
    data = os.urandom(SIZE)
    with tempfile.TemporaryDirectory(prefix="geo-file-create-") as tmp:
        root = Path(tmp)
        fresh = _create(root / "fresh", args.files, data)
        _create(root / "doomed", args.deleted, data)
        os.sync()  # as a finished run's files would be, long written
        shutil.rmtree(root / "doomed")
        after = _create(root / "after", args.files, data)
    rows = [(f"create {args.files:,} files of {SIZE} bytes, fresh tree", fresh),
            (f"the same right after deleting {args.deleted:,} files", after)]
    table = ["| what | seconds | files/s | µs per file | vs fresh |", "|---|---|---|---|---|"]
    table += [f"| {what} | {seconds:.2f} | {args.files / seconds:.0f} | "
              f"{seconds / args.files * 1e6:.0f} | {fresh / seconds:.3f}x |"
              for what, seconds in rows]
    text = "\n".join(table)
    print(text)
    append_section(args.output, "File creation after deletions", "bench.file_create",
                   "one thread, 100 files to a directory", text)


if __name__ == "__main__":
    main()
