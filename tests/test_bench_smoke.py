"""Each benchmark runs at its smallest size, so bench/ keeps working (no timing here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_verification_benchmark_runs_and_the_tools_agree() -> None:
    assert "| geo-sync" in _run("bench.verification_speed", "--size-mib", "4")


def test_the_worker_throughput_benchmark_runs() -> None:
    output = _run("bench.worker_throughput", "--items", "20", "--batches", "1,5")
    assert "| 5 |" in output


def test_the_event_apply_benchmark_runs() -> None:
    assert "| 500 |" in _run("bench.event_apply", "--events", "500")


def test_the_repository_checksum_benchmark_runs() -> None:
    assert "| geo-sync repository_checksum |" in _run("bench.repository_checksum",
                                                       "--refs", "200")


def test_the_status_scale_benchmark_runs() -> None:
    assert "| 1000 |" in _run("bench.status_scale", "--rows", "1000")


def test_the_blob_transfer_benchmark_runs() -> None:
    assert "| curl -o file, then sha256sum |" in _run("bench.blob_transfer", "--size-mib", "8")
