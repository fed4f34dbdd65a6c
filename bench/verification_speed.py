"""Verification throughput on one large file: geo-sync's checksum against plain
hashlib (one thread, the ceiling) and coreutils `sha256sum`, in the same run.

    .venv/bin/python -m bench.verification_speed [--size-mib 1024] [--output docs/benchmarks.md]

The file is written once and read three times per tool, alternating tools so the
page cache favours none; the best of three is reported.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.data import write_seeded_file
from bench.report import add_output_argument, append_section
from replicators.checksums import sha256_file

ROUNDS = 3


def _hashlib_ceiling(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256sum(path: Path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    add_output_argument(parser)
    args = parser.parse_args()
    tools: dict[str, Callable[[Path], str]] = {
        "geo-sync (replicators.checksums.sha256_file)": sha256_file,
        "hashlib sha256, one thread (ceiling)": _hashlib_ceiling,
        "coreutils sha256sum": _sha256sum,
    }
    best = dict.fromkeys(tools, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blob"
        write_seeded_file(path, 1, args.size_mib)
        digests = set()
        for _ in range(ROUNDS):
            for name, tool in tools.items():
                started = time.perf_counter()
                digests.add(tool(path))
                best[name] = min(best[name], time.perf_counter() - started)
        assert len(digests) == 1, "the tools disagree on the checksum"
    size_gb = args.size_mib * 1024 * 1024 / 1e9
    ceiling = best["hashlib sha256, one thread (ceiling)"]
    rows = ["| tool | seconds | GB/s | vs hashlib |", "|---|---|---|---|"]
    rows += [f"| {name} | {seconds:.3f} | {size_gb / seconds:.2f} | {ceiling / seconds:.2f}x |"
             for name, seconds in best.items()]
    print("\n".join(rows))
    append_section(args.output, f"Verification speed: one {args.size_mib} MiB file",
                   "bench.verification_speed", f"best of {ROUNDS}, warm page cache",
                   "\n".join(rows))


if __name__ == "__main__":
    main()
