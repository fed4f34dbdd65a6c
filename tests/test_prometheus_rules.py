"""The shipped alert rules: valid for promtool, and their unit tests pass."""

from __future__ import annotations

import re
import subprocess

from tests.prometheus import RULES, binary


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True,
                          cwd=RULES, timeout=120, check=False)


def test_the_alert_rules_are_valid() -> None:
    result = _promtool("check", "rules", "geo-sync-rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "geo-sync-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_prometheus_config_loads_the_rules() -> None:
    result = _promtool("check", "config", "prometheus.example.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    rules = (RULES / "geo-sync-rules.yml").read_text()
    tests = (RULES / "geo-sync-rules.test.yml").read_text()
    runbook = (RULES.parents[1] / "docs" / "operations.md").read_text()
    alerts = re.findall(r"alert: (\w+)", rules)
    assert alerts
    assert [a for a in alerts if f"alertname: {a}" not in tests] == []
    assert [a for a in alerts if f"### {a}" not in runbook] == []
