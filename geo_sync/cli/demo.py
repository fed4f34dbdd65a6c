"""`geo-sync demo`: the whole system in embedded mode, shown as it works."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from geo_sync.cli.context import make_console
from geo_sync.cli.secondary import render_secondary_status
from geo_sync.demo import run_demo
from geo_sync.logging import configure_logging

console = make_console()


@click.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="Keep the demo's sites here instead of a temporary directory.")
@click.option("--drill", is_flag=True, help="End with a planned failover drill on the "
              "secondary (RPO, catch-up time, readiness, estimated RTO).")
def demo(directory: Path | None, drill: bool) -> None:
    """Run a primary and a secondary in embedded mode and drive a CI workload through them.

    Exits 0 only if, at the end, the mirror equals the primary: the same refs and
    HEAD in every repository, the same bytes in every artifact and job log.
    """
    configure_logging("error", "json")
    if directory and directory.exists() and any(directory.iterdir()):
        raise click.ClickException(f"{directory} is not empty (hint: pass an empty or new --dir)")
    if directory is not None:
        _demo(directory, drill)
        return
    # A temporary directory goes away whatever happens: a demo must not leave gigabytes
    # of sites behind in /tmp. --dir keeps them for a look afterwards.
    root = Path(tempfile.mkdtemp(prefix="geo-sync-demo-"))
    try:
        _demo(root, drill)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        console.print(f"removed {root} (pass --dir DIR to keep the sites)")


def _drill_lines(report: dict[str, Any]) -> list[str]:
    rpo = report["rpo_now"]
    lost = "0 (nothing would be lost)" if rpo["zero"] else f"{rpo['items']} item(s)"
    return [f"  RPO now: {lost}",
            f"  catch-up: {report['catch_up_seconds']} s; estimated RTO "
            f"{report['estimated_rto_seconds']} s",
            "  ready to take over: " + ("yes" if report["ready"] else
                                        "no: " + "; ".join(report["blockers"]))]


def _demo(root: Path, drill: bool) -> None:
    console.print(f"[bold]geo-sync demo[/] in {root}: embedded primary and secondary "
                  "(SQLite, in-process broker and workers)")
    started = time.monotonic()
    last = {"stage": "", "line": ""}

    def report(stage: str, status: dict[str, Any]) -> None:
        if stage != last["stage"]:
            console.print(f"[cyan]{stage}[/]")
            last["stage"] = stage
        if "drill" in status:
            for line in _drill_lines(status["drill"]):
                console.print(line, highlight=False)
            return
        if status:
            parts = [f"{name} {c['synced']}/{c['total']}" for name, c in status["types"].items()]
            line = "  synced: " + ", ".join(parts)
            if line != last["line"]:
                console.print(line, highlight=False)
                last["line"] = line

    differences, final, changes = run_demo(root, report, drill=drill)
    render_secondary_status(final)
    console.print(f"{changes} changes published on the primary; "
                  f"{time.monotonic() - started:.1f} s")
    if differences:
        for line in differences[:20]:
            console.print(f"[red]difference:[/] {line}")
        raise click.ClickException("the mirror does not equal the primary")
    console.print("[green]mirror equals primary[/]: same refs and HEAD in every repository, "
                  "same bytes in every artifact and job log")
