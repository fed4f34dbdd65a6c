"""Each benchmark runs at its smallest size, so bench/ keeps working (no timing here)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The heaviest tests outside the fault matrix run one after another on one xdist worker
# (make test), so two of them never compete for the two cores.
pytestmark = pytest.mark.xdist_group("bench")

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, *args: str, timeout: float = 300) -> str:
    """Run a benchmark; check it wrote its section (with its command line and machine)
    to the --output file, as it would to docs/benchmarks.md; return what it printed."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "benchmarks.md"
        result = subprocess.run([sys.executable, "-m", module, *args, "--output", str(output)],
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        section = output.read_text()
    assert section.startswith("\n## ") and f"`python -m {module} " in section, section
    assert "cores" in section, "the machine is missing from the section"
    assert "scratch files (TMPDIR) on " in section, "the filesystem is missing"
    return result.stdout


def test_the_verification_benchmark_runs_and_the_tools_agree() -> None:
    assert "| geo-sync" in _run("bench.verification_speed", "--size-mib", "4")


def test_the_worker_throughput_benchmark_runs() -> None:
    output = _run("bench.worker_throughput", "--items", "12", "--batches", "1,4")
    assert "| 4 |" in output


def test_the_event_apply_benchmark_runs_deployed_and_against_the_portable_path() -> None:
    rows = _rows(_run("bench.event_apply", "--events", "500"))
    assert set(rows) == {"`secondary run` (cursor + scheduler), PostgreSQL upsert",
                         "cursor alone, PostgreSQL upsert", "cursor alone, portable path"}
    assert all(cells[0] == "500" for cells in rows.values()), rows


def test_the_scheduler_pass_benchmark_runs() -> None:
    rows = _rows(_run("bench.scheduler_pass", "--rows", "1000", "--passes", "3"))
    assert set(rows) == {"between sweeps", "during a sweep (5,000-copy chunk)"}


def test_the_repository_checksum_benchmark_runs() -> None:
    assert "| geo-sync repository_checksum |" in _run("bench.repository_checksum",
                                                       "--refs", "200")


def test_the_status_scale_benchmark_runs() -> None:
    rows = _rows(_run("bench.status_scale", "--rows", "1000"))
    assert set(rows) == {"geo-sync --help", "geo-sync status --json", "geo-sync check --json",
                         "geo-sync status --json, answered by a running `secondary run`",
                         "geo-sync check --json, answered by a running `secondary run`",
                         "its queries (secondary_status() in process)"}


def test_the_blob_transfer_benchmark_runs_against_sha256sum_and_openssl() -> None:
    output = _run("bench.blob_transfer", "--size-mib", "8")
    assert "| curl -o file, then sha256sum |" in output
    assert "| curl -o file, then openssl dgst -sha256 |" in output


def _rows(output: str) -> dict[str, list[str]]:
    """The printed markdown table: first cell -> the other cells."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def test_the_small_blobs_benchmark_runs_against_rsync_and_rclone_and_prints_json() -> None:
    output = _run("bench.small_blobs", "--items", "40", "--json")
    rows = _rows(output)
    assert any(name.startswith("rsync -a from") for name in rows)
    assert any(name.startswith("rsync -a --fsync") for name in rows)
    assert any(name.startswith("rclone copy") for name in rows)
    assert sum(name.startswith("geo-sync, running") for name in rows) == 2
    printed = json.loads(output.strip().splitlines()[-1])
    assert [row["tool"] for row in printed] == list(rows)
    assert all({"tool", "seconds", "rate", "ratio"} <= set(row) for row in printed)


def test_the_initial_sync_benchmark_runs_against_grok_pull_and_git_clone() -> None:
    rows = _rows(_run("bench.initial_sync", "--repos", "3", "--concurrency", "2"))
    assert set(rows) == {"geo-sync, 1 worker process x 2 threads", "grok-pull, pull_threads=2",
                         "git clone --mirror, 2 at a time",
                         "geo-sync's replicator alone (libgit2), 2 at a time, no worker "
                         "(not a peer: locates the gap)"}


def test_the_push_lag_benchmark_sees_every_push_on_the_mirror() -> None:
    rows = _rows(_run("bench.push_lag", "--rate", "4", "--seconds", "3", "--repos", "2"))
    [ours] = [cells for name, cells in rows.items() if name.startswith("geo-sync")]
    assert ours[3] == "0", f"pushes never seen on the geo-sync mirror: {ours}"
    assert any(name.startswith("grokmirror") for name in rows)
    [own] = [cells for name, cells in rows.items() if name.startswith("recorded by geo-sync")]
    assert own[0] != "inf", f"geo-sync recorded no lag of its own: {own}"


def test_the_cursor_memory_benchmark_runs() -> None:
    assert "| 2,000 |" in _run("bench.cursor_memory", "--events", "2000")


def test_the_kill_loop_runs_at_its_smallest_size_and_prints_its_seed() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.kill_loop", "--seed", "3",
                             "--kills", "3"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "kill loop seed 3 (3 kills); replay: python -m bench.kill_loop --seed 3" in \
        result.stdout
    assert "kill loop seed 3: converged after 3 kills" in result.stdout


def test_the_fault_matrix_command_writes_a_row_per_cell_with_its_verdict() -> None:
    # The command is under test, not the cell (tests/faults runs every cell): the cheapest.
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "fault-matrix.md"
        result = subprocess.run([sys.executable, "-m", "bench.fault_matrix", "-k",
                                 "slow_large_artifact", "--output", str(output)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        page = output.read_text()
    assert page.startswith("# Fault matrix\n")
    assert "`python -m bench.fault_matrix -k 'slow_large_artifact'`" in page
    [row] = [line for line in page.splitlines() if line.startswith("| A slow large artifact")]
    assert "| passed |" in row and "the artifact still in transfer" in row
    assert "`lease_seconds = 3.0`" in page


def test_the_sweep_cost_benchmark_runs_on_both_databases() -> None:
    rows = _rows(_run("bench.sweep_cost", "--items", "1000"))
    assert set(rows) == {"SQLite", "PostgreSQL"}
    assert all(cells[0] == "1,000" for cells in rows.values()), rows


def test_the_mirror_serve_benchmark_runs_against_nginx_and_prints_json() -> None:
    output = _run("bench.mirror_serve", "--repo-mib", "1", "--clones", "2", "--big-mib", "2",
                  "--small", "20", "--json")
    printed = json.loads(output.strip().splitlines()[-1])
    tools = {row["tool"] for row in printed}
    assert "nginx + fcgiwrap (Debian)" in tools
    assert sum(tool.startswith("geo-sync secondary serve") for tool in tools) == 3
    assert len(printed) == 16  # 4 servers x 4 loads


def test_the_git_fetch_benchmark_runs_against_nginx_and_counts_our_cpu() -> None:
    printed = json.loads(_run("bench.git_fetch_cpu", "--fetches", "2",
                              "--json").strip().splitlines()[-1])
    ours, nginx = printed
    assert ours["tool"].startswith("geo-sync primary serve")
    assert nginx["tool"].startswith("nginx")
    assert isinstance(ours["server CPU per fetch (ms)"], float)
    assert ours["server CPU per fetch (ms)"] > 0
    assert nginx["ratio"] == 1.0


@pytest.mark.timeout(900)
def test_the_failover_benchmark_runs_planned_and_unplanned() -> None:
    # Six sites' processes, one path after the other: a bound, not a speed check.
    rows = _rows(_run("bench.failover", "--artifacts", "4", "--repositories", "2",
                      timeout=840))
    assert set(rows) == {"planned", "unplanned (--force, primary killed)"}
    assert rows["planned"][3] == "0", rows  # RPO of the planned path: nothing lost


def test_the_scale_benchmark_runs_both_rounds_against_rsync_with_every_process_memory() -> None:
    output = _run("bench.scale", "--items", "100", "--json")
    rows = _rows(output)
    rounds = {name: cells[0] for name, cells in rows.items()}
    assert sorted(rounds.values()) == ["incremental"] * 3 + ["initial"] * 3, rows
    assert sum(name.startswith("rsync -a --fsync") for name in rows) == 2
    [ours] = [cells for name, cells in rows.items()
              if name.startswith("geo-sync") and cells[0] == "incremental"]
    assert all(role in ours[4] for role in ("primary serve", "secondary run", "worker")), ours
    assert all("rsync client" in cells[4] for name, cells in rows.items()
               if name.startswith("rsync")), rows
    printed = json.loads(output.strip().splitlines()[-1])
    assert [row["tool"] for row in printed] == list(rows)
    assert all({"tool", "round", "seconds", "rate", "ratio"} <= set(row) for row in printed)


def test_the_file_creation_benchmark_runs_fresh_and_after_deletions() -> None:
    rows = _rows(_run("bench.file_create", "--files", "200", "--deleted", "300"))
    assert set(rows) == {"create 200 files of 4096 bytes, fresh tree",
                         "the same right after deleting 300 files"}, rows
