"""`geo-sync status` on a secondary, for people: a verdict line first, then one short
block per type, so it reads in 80 columns without squeezed table headers."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from geo_sync.cli.verdict_view import render_verdict
from geo_sync.tracking.states import SyncState


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


def _site(console: Console, report: dict[str, Any]) -> None:
    """Epoch followed, and the primary's maintenance mode or fencing."""
    epoch = report.get("epoch") or {}
    primary = report.get("primary") or {}
    line = f"epoch followed {epoch.get('followed', '?')}"
    if epoch.get("promoted_at"):
        line += f"; [yellow]promoted to primary at {escape(epoch['promoted_at'])}[/]"
    if primary.get("demoted"):
        line += (f"; [red]the primary was demoted[/]: it is now "
                 f"{escape(str(primary.get('new_primary_url') or 'another site'))}")
    elif primary.get("maintenance"):
        line += (f"; [yellow]the primary is in maintenance[/] "
                 f"({escape(str(primary.get('maintenance_reason') or 'no reason given'))})")
    console.print(line)


def render(console: Console, report: dict[str, Any]) -> None:
    """The secondary's status as short lines."""
    render_verdict(console, report)
    console.print(f"\n[bold]secondary {escape(report['name'])}[/]")
    _site(console, report)
    selection = report.get("selection") or {}
    if selection.get("selective"):
        console.print("[yellow]selective[/]: holds only the selected items")
        for rule in selection["rules"]:
            console.print(f"  {escape(rule)}")
    if selection.get("config_differs"):
        console.print("[yellow]the config's selection is not applied yet[/]: run "
                      "`geo-sync secondary reselect`")
    for name, counts in report["types"].items():
        total = counts.get("total", 0)
        console.print(f"{name}")
        sync = {state: counts.get(state, 0) for state in SyncState}
        console.print(f"  synced   {_share(sync[SyncState.SYNCED], total)}; "
                      f"pending {sync[SyncState.PENDING]}, started {sync[SyncState.STARTED]}"
                      f", failed {sync[SyncState.FAILED]}")
        console.print(f"  verified {_share(counts.get('verified', 0), total)}; "
                      f"mismatched {counts.get('mismatched', 0)}, missing on primary "
                      f"{counts.get('missing_on_primary', 0)}")
        _item_lag(console, (report.get("item_lag") or {}).get(name))
    _events(console, report)
    _workers(console, report)
    _errors(console, report)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _item_lag(console: Console, lag: dict[str, Any] | None) -> None:
    """Commit-to-verified lag of the changes verified in the window, and the oldest
    change still waiting."""
    if not lag:
        return
    window = f"last {lag['window_seconds'] / 60:.0f} min"
    if lag["samples"]:
        console.print(f"  lag      commit to verified, {window} ({lag['samples']} change(s)): "
                      f"p50 {_seconds(lag['p50_seconds'])}, p99 {_seconds(lag['p99_seconds'])}"
                      f", max {_seconds(lag['max_seconds'])}")
    else:
        console.print(f"  lag      no change verified in the {window}")
    if lag["oldest_unverified_at"]:
        console.print("  oldest change not yet verified: committed "
                      f"{_ago(lag['oldest_unverified_age_seconds'])}")


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
