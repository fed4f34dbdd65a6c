"""Events per second the log cursor applies to the tracking database.

    .venv/bin/python -m bench.event_apply [--events 100000] [--json]
        [--output docs/benchmarks.md]

A served primary on PostgreSQL gets N committed events (artifact created/deleted
over N/2 items, so every item is new: the cursor's slowest case) once the
secondary has backfilled an empty catalog. Three rows, one after the other in
one run, each with its own tracking database on PostgreSQL:

- ``secondary run`` as deployed: the real process with its scheduler running
  (Redis broker, no worker attached). The clock runs from the commit of the
  events to the cursor's last commit (its ``updated_at``), so the harness polls
  the cursor row only every 0.2 s and its polling is not on the measured path;
- the cursor alone in this process (``LogCursor.run_once`` in a loop), with
  the PostgreSQL upsert, then with the portable path (what SQLite runs, and
  what PostgreSQL ran before) for the ratio between the two.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import Engine, select, text

from bench.harness import running_secondary
from bench.report import add_output_argument, append_section
from geo_sync.db import write_transaction
from geo_sync.secondary.cursor import PAGE_LIMIT, LogCursor
from geo_sync.secondary.runtime import open_runtime
from geo_sync.tracking import event_rows
from geo_sync.tracking.models import CursorRow
from tests.services import temporary_database
from tests.sites import PrimarySite, primary_site, secondary_site

CHUNK = 100_000
# Event n: artifact r{n/2} created (n even) or deleted (n odd).
INSERT = text("""
INSERT INTO geo_events (txid, replicable_type, event, record_id, path, payload, created_at)
SELECT pg_current_xact_id()::text::bigint, 'artifact',
       CASE WHEN n % 2 = 0 THEN 'created' ELSE 'deleted' END,
       'r' || (n / 2), 'p/' || (n / 2) || '.bin', json_build_object('size', n), now()
FROM generate_series(:low, :high - 1) AS n
""")


def publish_events(primary: PrimarySite, first: int, count: int) -> float:
    """Write events ``first``..``first + count - 1``; return the wall time of the commit."""
    with write_transaction(primary.engine) as conn:
        for low in range(first, first + count, CHUNK):
            conn.execute(INSERT, {"low": low, "high": min(low + CHUNK, first + count)})
    return time.time()  # the events are visible to the cursor from here


def _cursor_state(engine: Engine) -> tuple[int | None, datetime | None]:
    """(events applied, the cursor's last commit); None while backfill is due."""
    with engine.connect() as conn:
        row = conn.execute(select(CursorRow.events_applied, CursorRow.backfill_required,
                                  CursorRow.updated_at).where(CursorRow.id == 1)).first()
    if row is None or row.backfill_required:
        return None, None
    return int(row.events_applied), row.updated_at


def cpu_seconds(pid: int) -> float:
    """User + system CPU ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deployed(primary: PrimarySite, first: int, events: int) -> tuple[float, dict[str, float]]:
    """Seconds `secondary run` takes to apply ``events`` new ones (see the docstring),
    and the CPU seconds it and `primary serve` used meanwhile."""
    assert primary.process is not None
    with running_secondary(primary, poll_wait_seconds=30) as secondary:
        engine = secondary.site.engine
        while _cursor_state(engine)[0] is None:
            time.sleep(0.1)
        pids = {"secondary run": secondary.processes[0].pid, "primary serve": primary.process.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        committed = publish_events(primary, first, events)
        while (state := _cursor_state(engine))[0] is None or state[0] < events:
            time.sleep(0.2)
        cpu = {name: round(cpu_seconds(pid) - before[name], 2) for name, pid in pids.items()}
        assert state[1] is not None
        return state[1].timestamp() - committed, cpu


def in_process(primary: PrimarySite, first: int, events: int
               ) -> tuple[float, dict[str, float]]:
    """Seconds ``LogCursor.run_once`` in a loop takes to apply ``events`` new ones."""
    with temporary_database("geo_tracking") as url, tempfile.TemporaryDirectory() as tmp:
        site = secondary_site(Path(tmp) / "s", primary, url)
        runtime = open_runtime(site.settings)
        cursor = LogCursor(runtime)
        cursor.run_once(wait=0)  # backfill: moves the cursor to the head
        publish_events(primary, first, events)
        applied = 0
        started = time.perf_counter()
        while applied < events:
            applied += cursor.run_once(wait=0)
        elapsed = time.perf_counter() - started
        cursor.close()
        runtime.close()
        site.engine.dispose()
    return elapsed, {}


@contextmanager
def portable_path() -> Iterator[None]:
    """Make PostgreSQL apply events the portable way, as SQLite does."""
    with mock.patch.object(event_rows, "_upsert_json", event_rows.note_changes_portable):
        yield


def run(events: int) -> list[dict[str, Any]]:
    runs: list[tuple[str, Callable[[PrimarySite, int, int],
                                    tuple[float, dict[str, float]]], bool]] = [
        ("`secondary run` (cursor + scheduler), PostgreSQL upsert", deployed, False),
        ("cursor alone, PostgreSQL upsert", in_process, False),
        ("cursor alone, portable path", in_process, True),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, temporary_database() as purl, \
            primary_site(Path(tmp) / "p", purl) as primary:
        for number, (name, measure, portable) in enumerate(runs):
            # Each run gets its own new items, so each is the all-new case.
            with portable_path() if portable else nullcontext():
                seconds, cpu = measure(primary, number * events, events)
            rows.append({"tool": name, "events": events, "seconds": round(seconds, 3),
                         "rate": round(events / seconds), "cpu_seconds": cpu})
    portable = rows[-1]["seconds"]
    for row in rows:
        row["ratio"] = round(portable / row["seconds"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    add_output_argument(parser)
    args = parser.parse_args()
    rows = run(args.events)
    table = "\n".join(["| run | events | seconds | events/s | vs portable path "
                       "| CPU seconds meanwhile |", "|---|---|---|---|---|---|"] + [
        f"| {r['tool']} | {r['events']} | {r['seconds']:.2f} | {r['rate']} | {r['ratio']}x | "
        + (", ".join(f"{k} {v:.1f}" for k, v in r["cpu_seconds"].items()) or "—") + " |"
        for r in rows])
    print(table)  # with --json, append_section prints the rows as JSON on the last line
    append_section(args.output, "Event apply rate", "bench.event_apply",
                   f"PostgreSQL primary and tracking DB, pages of {PAGE_LIMIT} over the real "
                   "Geo API, every item new, the three rows one after the other", table)


if __name__ == "__main__":
    main()
