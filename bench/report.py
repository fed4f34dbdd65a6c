"""Writing a benchmark's result to docs/benchmarks.md with the command and machine."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """``--output FILE`` (default docs/benchmarks.md): where the section is appended."""
    parser.add_argument("--output", type=Path, default=DOCS,
                        help="append the result as a markdown section here "
                        "(default: docs/benchmarks.md)")


def machine() -> str:
    return f"{platform.machine()} with {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"


def append_section(output: Path, title: str, module: str, details: str,
                   table: str) -> None:
    """Append ``## title``, the exact command line, ``details`` and ``table``."""
    command = " ".join(["python", "-m", module, *sys.argv[1:]])
    with output.open("a") as handle:
        handle.write(f"\n## {title}\n\n`{command}` — {details}, {machine()}.\n\n{table}\n")


def peer_table(rows: list[tuple[str, float]], count: int, unit: str, digits: int = 2) -> str:
    """A markdown table of (tool, seconds) rows with ``count``/s and the ratio to the
    fastest peer (every row not named geo-sync): above 1 is faster than that peer."""
    fastest_peer = min(seconds for name, seconds in rows if "geo-sync" not in name)
    table = [f"| tool | seconds | {unit}/s | vs fastest peer |", "|---|---|---|---|"]
    table += [f"| {name} | {seconds:.2f} | {count / seconds:.1f} | "
              f"{fastest_peer / seconds:.{digits}f}x |" for name, seconds in rows]
    return "\n".join(table)
