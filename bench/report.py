"""Writing a benchmark's result to docs/benchmarks.md with the command and machine."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """``--output FILE`` (default docs/benchmarks.md): where the section is appended;
    ``--json``: also print the table's rows as JSON, as the last line of stdout."""
    parser.add_argument("--output", type=Path, default=DOCS,
                        help="append the result as a markdown section here "
                        "(default: docs/benchmarks.md)")
    parser.add_argument("--json", action="store_true",
                        help="print the rows as JSON (tool, seconds, rate, ratio) on the "
                        "last line of stdout, for checking the figures by script")


def _number(cell: str) -> float | str:
    text = cell.strip().replace(",", "").removesuffix("x")
    try:
        return float(text)
    except ValueError:
        return cell.strip()


def table_rows(table: str) -> list[dict[str, float | str]]:
    """The rows of a markdown table as dicts: the first column is "tool", a "seconds"
    column "seconds", a ".../s" column "rate", a "vs ..." column "ratio"; other
    columns keep their header."""
    lines = [line.strip().strip("|").split("|") for line in table.splitlines()
             if line.startswith("|")]
    if len(lines) < 2:
        return []
    headers = []
    for index, header in enumerate(cell.strip() for cell in lines[0]):
        if index == 0:
            headers.append("tool")
        elif header.startswith("seconds"):
            headers.append("seconds")
        elif header.endswith("/s"):
            headers.append("rate")
        elif header.startswith("vs "):
            headers.append("ratio")
        else:
            headers.append(header)
    return [{name: (cell.strip() if index == 0 else _number(cell))
             for index, (name, cell) in enumerate(zip(headers, line, strict=False))}
            for line in lines[2:]]


def machine() -> str:
    return (f"{platform.machine()} with {os.cpu_count()} cores, scratch files (TMPDIR) on "
            f"{filesystem_of(Path(tempfile.gettempdir()))}, {time.strftime('%Y-%m-%d')}")


def filesystem_of(path: Path) -> str:
    """``path``'s filesystem type and device, and whether it keeps a journal: creating
    files on ext4 without one costs more the more files were deleted in the last
    minutes (see bench.file_create), which moves every copying benchmark."""
    best = ("", "?", "?")
    with Path("/proc/self/mountinfo").open() as mounts:
        for line in mounts:
            fields = line.split()
            mount_point = fields[4]
            after = fields.index("-")
            fstype, source = fields[after + 1], fields[after + 2]
            if (str(path).startswith(mount_point.rstrip("/") + "/")
                    and len(mount_point) > len(best[0])):
                best = (mount_point, fstype, source)
    mount_point, fstype, source = best
    if fstype != "ext4":
        return f"{fstype} ({source} on {mount_point})"
    device = Path(source).name
    journals = Path("/proc/fs/jbd2")  # one entry per journal in use: <device>-<inode>
    journal = journals.is_dir() and any(entry.name.startswith(f"{device}-")
                                         for entry in journals.iterdir())
    return f"ext4 {'with' if journal else 'WITHOUT'} a journal ({source} on {mount_point})"


def append_section(output: Path, title: str, module: str, details: str,
                   table: str) -> None:
    """Append ``## title``, the exact command line, ``details`` and ``table``."""
    arguments = [arg for arg in sys.argv[1:] if arg != "--json"]
    command = " ".join(["python", "-m", module, *arguments])
    with output.open("a") as handle:
        handle.write(f"\n## {title}\n\n`{command}` — {details}, {machine()}.\n\n{table}\n")
    if "--json" in sys.argv[1:]:  # every benchmark's parser has it (add_output_argument)
        print(json.dumps(table_rows(table)), flush=True)


def peer_table(rows: list[tuple[str, float]], count: int, unit: str, digits: int = 2) -> str:
    """A markdown table of (tool, seconds) rows with ``count``/s and the ratio to the
    fastest peer (every row not named geo-sync or "not a peer"): above 1 is faster than
    that peer."""
    fastest_peer = min(seconds for name, seconds in rows if "geo-sync" not in name
                       and "not a peer" not in name)
    table = [f"| tool | seconds | {unit}/s | vs fastest peer |", "|---|---|---|---|"]
    table += [f"| {name} | {seconds:.2f} | {count / seconds:.1f} | "
              f"{fastest_peer / seconds:.{digits}f}x |" for name, seconds in rows]
    return "\n".join(table)
