"""What the cheap verification sweep costs: a stat per copy against its fingerprint.

    .venv/bin/python -m bench.sweep_cost [--items 100000] [--chunk 5000] [--json]
        [--output docs/benchmarks.md]

N artifacts (64-byte files in 1,000-file directories) are on the mirror and
in the tracking database as synced and verified, with the fingerprint recorded at
verification, on SQLite and on PostgreSQL. The clock runs over one whole sweep
(``verification.sweep.sweep_chunk`` until the table is done, as the scheduler
runs it, a chunk per pass) with nothing changed, so nothing is sent to
verification: the standing cost of finding corruption in minutes. The page
cache is warm (the sweep runs every minute). One chunk is what one scheduler
pass pays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.report import add_output_argument, append_section
from geo_sync.db import make_engine, utcnow, write_transaction
from geo_sync.migrate import TRACKING
from geo_sync.tracking.sync_rows import new_row
from replicators.artifact import ArtifactRegistry
from replicators.type_map import REPLICATORS
from tests.services import temporary_database
from verification.sweep import sweep_chunk

PER_DIR = 1000
INSERT_BATCH = 10_000


def _fill(mirror: Path, url: str, items: int) -> None:
    """The files on the mirror and their verified rows in the tracking DB at ``url``."""
    artifacts, now = REPLICATORS["artifact"], utcnow()
    engine = make_engine(url)
    TRACKING.upgrade(engine)
    rows = []
    for n in range(items):
        relpath = f"p{n // PER_DIR}/{n}.bin"
        path = mirror / "artifacts" / relpath
        if n % PER_DIR == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(n.to_bytes(8, "big") * 8)
        row = new_row(relpath, relpath, size=64)
        row.update(state="synced", mirror_path=relpath, verification_state="succeeded",
                   verified_at=now, verified_fingerprint=artifacts.fingerprint(path))
        rows.append(row)
        if len(rows) == INSERT_BATCH:
            with write_transaction(engine) as conn:
                conn.execute(insert(ArtifactRegistry), rows)
            rows = []
    if rows:
        with write_transaction(engine) as conn:
            conn.execute(insert(ArtifactRegistry), rows)
    engine.dispose()


def _sweep(mirror: Path, url: str, chunk: int) -> dict[str, Any]:
    engine = make_engine(url)
    artifacts = REPLICATORS["artifact"]
    sweep_chunk(engine, artifacts, mirror, 0, chunk)  # connect and warm the statement
    times, checked, suspicious, after = [], 0, 0, 0
    started = time.perf_counter()
    while True:
        one = time.perf_counter()
        result = sweep_chunk(engine, artifacts, mirror, after, chunk)
        times.append(time.perf_counter() - one)
        checked, suspicious = checked + result.checked, suspicious + len(result.suspicious)
        if result.next_after is None:
            break
        after = result.next_after
    total = time.perf_counter() - started
    engine.dispose()
    return {"checked": checked, "suspicious": suspicious, "seconds": total,
            "per_second": checked / total, "chunks": len(times),
            "chunk_ms_mean": 1000 * total / len(times), "chunk_ms_max": 1000 * max(times)}


def run(items: int, chunk: int) -> dict[str, dict[str, Any]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        mirror = Path(tmp) / "mirror"
        urls = {"SQLite": f"sqlite:///{Path(tmp) / 'tracking.db'}",
                "PostgreSQL": stack.enter_context(temporary_database("geo_tracking"))}
        for backend, url in urls.items():
            _fill(mirror, url, items)
            results[backend] = _sweep(mirror, url, chunk)
            assert results[backend]["checked"] == items, results[backend]
            assert results[backend]["suspicious"] == 0, "an unchanged copy was suspicious"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5000,
                        help="rows per sweep_chunk call (verification_sweep_chunk)")
    add_output_argument(parser)  # --json too
    args = parser.parse_args()
    results = run(args.items, args.chunk)
    lines = ["| tracking DB | copies | whole sweep, s | copies/s | one pass (chunk of "
             f"{args.chunk}), ms mean / max |", "|---|---|---|---|---|"]
    lines += [f"| {backend} | {r['checked']:,} | {r['seconds']:.2f} | {r['per_second']:,.0f} "
              f"| {r['chunk_ms_mean']:.0f} / {r['chunk_ms_max']:.0f} |"
              for backend, r in results.items()]
    table = "\n".join(lines)
    print(table)
    append_section(args.output, "Verification sweep cost", "bench.sweep_cost",
                   "artifacts synced and verified, nothing changed; a stat per copy and "
                   "its row read, warm page cache; at the default 1 s scheduler interval "
                   f"a chunk of {args.chunk} per pass per type", table)


if __name__ == "__main__":
    main()
