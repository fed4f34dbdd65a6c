"""Writing a benchmark's result to docs/benchmarks.md with the command and machine."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path


def machine() -> str:
    return f"{platform.machine()} with {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"


def append_section(output: Path | None, title: str, module: str, details: str,
                   table: str) -> None:
    """Append ``## title``, the exact command line, ``details`` and ``table``."""
    if output is None:
        return
    command = " ".join(["python", "-m", module, *sys.argv[1:]])
    with output.open("a") as handle:
        handle.write(f"\n## {title}\n\n`{command}` — {details}, {machine()}.\n\n{table}\n")
