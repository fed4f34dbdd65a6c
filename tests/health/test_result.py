"""How check results add up: every combination of levels, thresholds, failing probes."""

from __future__ import annotations

import itertools

import pytest

from geo_sync.errors import ConfigError
from geo_sync.health.result import (
    CheckResult,
    Level,
    by_threshold,
    run_check,
    verdict,
    worst,
)

SEVERITY = [Level.OK, Level.WARNING, Level.UNKNOWN, Level.CRITICAL]
COMBINATIONS = [c for n in range(4) for c in itertools.product(Level, repeat=n)]


@pytest.mark.parametrize("levels", COMBINATIONS, ids=str)
def test_the_exit_code_is_the_worst_level_and_the_verdict_names_every_non_ok_check(
        levels: tuple[Level, ...]) -> None:
    results = [CheckResult(f"c{i}", level, f"m{i}") for i, level in enumerate(levels)]
    overall = verdict(results)
    expected = max(levels, key=SEVERITY.index, default=Level.OK)
    assert worst(results) is expected and overall.level is expected
    assert [r.name for r in overall.reasons] == [r.name for r in results if r.level]
    assert overall.word == {Level.OK: "Healthy", Level.WARNING: "Degraded"}.get(
        expected, "Unhealthy")
    assert overall.to_json()["exit_code"] == int(expected)


@pytest.mark.parametrize("warning,critical", [(1, 10), (0.5, 0.6), (100, 100_000)])
def test_a_threshold_is_ok_below_warning_warning_from_it_and_critical_from_critical(
        warning: float, critical: float) -> None:
    assert by_threshold(warning - 0.01, warning, critical) is Level.OK
    assert by_threshold(warning, warning, critical) is Level.WARNING
    assert by_threshold((warning + critical) / 2, warning, critical) in (
        Level.WARNING, Level.CRITICAL)
    assert by_threshold(critical, warning, critical) is Level.CRITICAL
    assert by_threshold(critical * 10, warning, critical) is Level.CRITICAL


@pytest.mark.parametrize("error", [ConfigError("bad", hint="fix it"), KeyError("x"),
                                   RuntimeError("boom"), ZeroDivisionError()])
def test_a_probe_that_raises_is_unknown_with_a_hint_not_a_traceback(error: Exception) -> None:
    def probe() -> CheckResult:
        raise error

    result = run_check("thing", probe)
    assert result.level is Level.UNKNOWN and result.hint
    assert result.line().startswith("UNKNOWN  thing: ") and "\n" not in result.line()


def test_only_non_ok_lines_carry_a_hint() -> None:
    assert "hint" not in CheckResult("a", Level.OK, "fine", "ignored").line()
    assert "(hint: do x)" in CheckResult("a", Level.WARNING, "meh", "do x").line()
