"""The verdict line `geo-sync status` prints first, on either role, with its reasons."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

_COLOURS = {"Healthy": "green", "Degraded": "yellow", "Unhealthy": "red"}


def render_verdict(console: Console, report: dict[str, Any]) -> None:
    """Healthy / Degraded / Unhealthy, then one line (and hint) per reason."""
    verdict = report.get("verdict")
    if not verdict:
        return
    word = verdict["verdict"]
    console.print(f"[bold {_COLOURS.get(word, 'red')}]{word}[/]")
    for reason in verdict["reasons"]:
        console.print(f"  {reason['status']} {escape(reason['check'])}: "
                      f"{escape(reason['message'])}")
        if reason.get("hint"):
            console.print(f"    hint: {escape(reason['hint'])}")
