"""`geo-sync status` on a secondary, for people: a verdict line first, then one short
block per type, so it reads in 80 columns without squeezed table headers."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from geo_sync.cli.verdict_view import render_verdict


def _share(done: int, total: int) -> str:
    percent = 100.0 * done / total if total else 100.0
    return f"{done} / total {total} ({percent:.1f}%)"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _event(event_id: object) -> str:
    return "none yet" if event_id is None else str(event_id)


def render(console: Console, report: dict[str, Any]) -> None:
    """The secondary's status as short lines."""
    render_verdict(console, report)
    console.print(f"\n[bold]secondary {escape(report['name'])}[/]")
    for name, counts in report["types"].items():
        total = counts.get("total", 0)
        console.print(f"{name}")
        console.print(f"  synced   {_share(counts.get('synced', 0), total)}; "
                      f"pending {counts.get('pending', 0)}, started {counts.get('started', 0)}"
                      f", failed {counts.get('failed', 0)}")
        console.print(f"  verified {_share(counts.get('verified', 0), total)}; "
                      f"mismatched {counts.get('mismatched', 0)}, missing on primary "
                      f"{counts.get('missing_on_primary', 0)}")
    _events(console, report)
    _workers(console, report)
    _errors(console, report)


def _events(console: Console, report: dict[str, Any]) -> None:
    events, lag, primary = report.get("events", {}), report["lag"], report["primary"]
    console.print("\n[bold]events[/]")
    answered = primary["reachable"] and not primary.get("refused")
    if answered:
        console.print(f"  last seen      {_event(events.get('last_seen_id'))} "
                      f"({_ago(events.get('last_seen_age_seconds'))})")
    elif primary.get("refused"):
        # It answered but refuses us: a credential to fix, not a network fault.
        console.print("  last seen      unknown: [red]primary refuses us: "
                      f"{escape(primary.get('error', ''))}[/]")
    elif primary["queried"]:
        # The error already says "primary unreachable ...": no second prefix.
        console.print(f"  last seen      unknown: [red]{escape(primary.get('error', ''))}[/]")
    else:
        console.print("  last seen      (the primary was not asked)")
    console.print(f"  last processed {_event(events.get('last_processed_id'))} "
                  f"({_ago(events.get('last_processed_age_seconds'))})")
    if answered:
        console.print(f"  lag            {lag['events']} event(s), {lag['seconds']:.0f} s")
    holder = report.get("cursor_holder") or {}
    if holder.get("alive"):
        console.print(f"  cursor holder  {escape(holder['holder'])}")
    else:
        console.print("  cursor holder  [red]none[/] (no `secondary run` holds the lease)")
    cursor = report["cursor"]
    if cursor["backfill_required"]:
        console.print(f"  backfill       {escape(cursor['backfill_progress'] or 'not started')}")
    if cursor["last_error"]:
        console.print(f"  [yellow]cursor error[/]   {escape(cursor['last_error'])}")
    for blocker, count in sorted(report.get("waiting_for", {}).items()):
        what = {"primary": "the primary to answer",
                "storage": "space or write access on the mirror's storage"}.get(blocker, blocker)
        console.print(f"  [red]{count} item(s) waiting for {escape(what)}[/]")
        console.print("    they are retried as soon as it is back")


def _workers(console: Console, report: dict[str, Any]) -> None:
    workers = report.get("workers", [])
    alive = [w for w in workers if w["alive"]]
    console.print(f"\n[bold]workers[/] {len(alive)} alive"
                  + (f", {len(workers) - len(alive)} stale" if len(workers) > len(alive)
                     else ""))
    for worker in workers:
        state = "" if worker["alive"] else " [red]stale[/]"
        console.print(f"  {escape(worker['worker'])} ({worker['kind']}){state}")
        console.print(f"    beat {_ago(worker['beat_age_seconds'])}, "
                      f"{worker['items_done']} item(s) done")


def _errors(console: Console, report: dict[str, Any]) -> None:
    if report["last_errors"]:
        console.print("\n[bold]last errors[/]")
        for error in report["last_errors"]:
            console.print(f"  {error['type']} {escape(error['path'])}")
            console.print(f"    {escape(error['error'])}"
                          + (f" (retry at {error['retry_at']})" if error["retry_at"] else ""))
