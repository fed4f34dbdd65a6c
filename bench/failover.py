"""Failover: RTO and RPO of a planned and an unplanned promotion, and the bytes the
third site copies again after `repoint`.

    .venv/bin/python -m bench.failover [--artifacts 200] [--repositories 4]
        [--mode production|embedded] [--json] [--output docs/benchmarks.md]

Three sites per path (a primary, the secondary promoted, a third site), each with its
real processes (PostgreSQL and Redis in production mode). Planned: the pair is in
sync and writes go on until `promote` (maintenance on, drain, fence, catalog,
config), RTO from the command's start until the new primary's Geo API answers.
Unplanned: the promoted site's workers die, the primary takes a round of writes and
is killed, then `promote --force`; RPO is what it lists as lost. Repoint: the bytes
of the third site's copies replaced after `secondary repoint` and its catch-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import add_output_argument, append_section
from tests.deployment import Deployment, wait_for
from tests.failover.sites import Trio, free_port, geo_sync, trio


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, size) of every artifact and job log copy."""
    found = {}
    for kind in ("artifacts", "job_logs"):
        for path in (root / kind).rglob("*"):
            if path.is_file() and not path.name.startswith(".geo-sync-tmp-"):
                stat = path.stat()
                found[f"{kind}/{path.relative_to(root / kind)}"] = (stat.st_ino, stat.st_size)
    return found


def _promote(sites: Trio, *args: str) -> tuple[dict[str, Any], float, Any]:
    """Run promote and serve; (report, RTO seconds until the new Geo API answers, site)."""
    port = free_port()
    started = time.perf_counter()
    result, report = sites.promote(*args, port=port)
    if result.returncode != 0:
        raise SystemExit(f"promote failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    sites.one.stop_all()
    new = sites.new_primary(port)  # returns once the port answers
    return report, round(time.perf_counter() - started, 3), new


def _repoint(sites: Trio, new: Any) -> dict[str, Any]:
    three = sites.three
    before = _files(three.secondary.settings.mirror_root)
    env = dict(os.environ, S3_SECRET=sites.three_secret)
    added = geo_sync(new.config, "primary", "add-secondary", "s3", "--secret-env", "S3_SECRET",
                     env=env)
    if added.returncode:
        raise SystemExit(added.stderr)
    three.stop_all()
    result = three.secondary.cli("secondary", "repoint", new.url, "--json", check=False)
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)
    report = json.loads(result.stdout)
    three.start()
    follower = Deployment(three.mode, new, three.secondary, three.logs,
                          processes=three.processes)
    follower.wait_converged()
    after = _files(three.secondary.settings.mirror_root)
    copied = sum(after[path][1] for path, (inode, _) in before.items()
                 if path in after and after[path][0] != inode)
    held = sum(size for _, size in before.values())
    return {"held_bytes": held, "copied_again_bytes": copied,
            "copied_again_percent": round(100 * copied / held, 3) if held else 0.0,
            "repoint_to_copy_items": report["to_copy_items"]}


def planned(mode: str, tmp: Path, repositories: int, artifacts: int) -> dict[str, Any]:
    tmp.mkdir(parents=True)
    with trio(mode, tmp) as sites:
        workload = sites.one.workload(tmp / "scratch")
        workload.initial(repositories=repositories, artifacts=artifacts, logs=2)
        sites.one.start()
        sites.three.start()
        workload.round(0)
        sites.one.wait_converged()
        sites.three.wait_converged()
        workload.round(1)  # still being copied when the promotion starts
        report, rto, new = _promote(sites)
        return {"path": "planned", "rto_seconds": rto,
                "promote_seconds": report["rto_seconds"],
                "drain_seconds": report["seconds"].get("drain"),
                "rpo_items": report["rpo"]["items"],
                "rpo_events": report["rpo"]["events_not_applied"],
                **_repoint(sites, new)}


def unplanned(mode: str, tmp: Path, repositories: int, artifacts: int) -> dict[str, Any]:
    tmp.mkdir(parents=True)
    with trio(mode, tmp) as sites:
        one = sites.one
        workload = one.workload(tmp / "scratch")
        workload.initial(repositories=repositories, artifacts=artifacts, logs=2)
        one.start()
        one.wait_converged()
        one.kill_workers()
        workload.round(0)
        wait_for(one.caught_up, "the promoted site to see the round's events")
        assert sites.primary.process is not None
        sites.primary.process.send_signal(signal.SIGKILL)
        sites.primary.process.wait()
        report, rto, _ = _promote(sites, "--force")
        return {"path": "unplanned (--force, primary killed)", "rto_seconds": rto,
                "promote_seconds": report["rto_seconds"], "drain_seconds": None,
                "rpo_items": report["rpo"]["items"],
                "rpo_events": report["rpo"]["events_not_applied"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=200)
    parser.add_argument("--repositories", type=int, default=4)
    parser.add_argument("--mode", choices=["production", "embedded"], default="production")
    add_output_argument(parser)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(planned(args.mode, Path(tmp) / "planned", args.repositories,
                            args.artifacts))
        rows.append(unplanned(args.mode, Path(tmp) / "unplanned", args.repositories,
                              args.artifacts))
    table = ["| path | RTO seconds (until the new Geo API answers) | promote seconds | "
             "drain seconds | RPO: items lost | RPO: events not applied | third site: "
             "bytes copied again / held |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        again = (f"{row['copied_again_bytes']} / {row['held_bytes']} "
                 f"({row['copied_again_percent']} %)" if "held_bytes" in row else "—")
        events = ("unknown (primary dead)" if row["rpo_events"] is None
                  else row["rpo_events"])
        table.append(f"| {row['path']} | {row['rto_seconds']:.2f} | "
                     f"{row['promote_seconds']:.2f} | {row['drain_seconds'] or '—'} | "
                     f"{row['rpo_items']} | {events} | {again} |")
    text = "\n".join(table)
    print(json.dumps(rows, indent=2) if args.json else text)
    append_section(args.output, "Failover: RTO, RPO and repoint", "bench.failover",
                   f"{args.mode} mode, {args.repositories} repositories, {args.artifacts} "
                   "artifacts, a CI round in flight; goal: planned RTO <= 60 s, RPO 0, "
                   "repoint copies <= 1 % again", text)


if __name__ == "__main__":
    main()
