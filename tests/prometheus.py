"""Debian's Prometheus for the tests: promtool, and a real server in a temp directory.

Missing binaries skip the tests locally and fail them in CI (CI=true), as every
other service does (tests/services.py); `.ci/run` installs the package.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.services import service_missing
from tests.sites import free_port, wait_for_port

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        service_missing(name, FileNotFoundError(
            f"{name} not on PATH; install Debian's prometheus package"))
        raise AssertionError("unreachable")
    return found


def quick_rules(target: Path) -> Path:
    """The shipped rules with every `for` cut to 0s, so a test need not wait minutes."""
    rules = yaml.safe_load((RULES / "geo-sync-rules.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    target.write_text(yaml.safe_dump(rules))
    return target


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["alerts"])

    def firing(self, name: str) -> bool:
        return any(a["labels"]["alertname"] == name and a["state"] == "firing"
                   for a in self.alerts())


@contextmanager
def prometheus_server(directory: Path, targets: dict[str, list[str]]
                      ) -> Iterator[PrometheusServer]:
    """A Prometheus scraping ``targets`` ({job: [host:port]}) every second, evaluating the
    quick rules every second, on a free port, with its data in ``directory``."""
    executable = binary("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    rules = quick_rules(directory / "rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                   "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                           for job, hosts in targets.items()],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [executable, f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield PrometheusServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
