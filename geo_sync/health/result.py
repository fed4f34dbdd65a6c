"""Check results and how they add up to one verdict and one exit code (Nagios's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from geo_sync.errors import GeoSyncError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from geo_sync.migrate import Schema


class Level(IntEnum):
    """A check's outcome; the value is the Nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


# Worst first when results are combined: a critical finding outweighs a check that
# could not run, which outweighs a warning (the order `ghe-repl-status` uses).
_SEVERITY = {Level.OK: 0, Level.WARNING: 1, Level.UNKNOWN: 2, Level.CRITICAL: 3}
VERDICTS = {Level.OK: "Healthy", Level.WARNING: "Degraded", Level.UNKNOWN: "Unhealthy",
            Level.CRITICAL: "Unhealthy"}


@dataclass(frozen=True)
class CheckResult:
    """One check: what it looked at, what it found, and (unless OK) what to do."""

    name: str
    level: Level
    message: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.level.name, "message": self.message,
                "hint": self.hint or None}

    def line(self) -> str:
        text = f"{self.level.name:<8} {self.name}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint and self.level else text


def ok(name: str, message: str) -> CheckResult:
    return CheckResult(name, Level.OK, message)


def schema_check(name: str, schema: Schema, engine: Engine, migrate: str) -> CheckResult:
    """The database answers and its schema is the one this code expects."""
    try:
        current, head = schema.current(engine), schema.head()
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return CheckResult(name, Level.CRITICAL, f"unreachable: {reason}",
                           "check that the database server runs and database_url is right")
    if current != head:
        return CheckResult(name, Level.CRITICAL, f"schema at {current or 'nothing'}, code "
                           f"expects {head}", f"run `{migrate}`")
    return ok(name, f"reachable, schema {head}")


def by_threshold(value: float, warning: float, critical: float) -> Level:
    """OK below ``warning``, WARNING from it, CRITICAL from ``critical``."""
    if value >= critical:
        return Level.CRITICAL
    if value >= warning:
        return Level.WARNING
    return Level.OK


def run_check(name: str, probe: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; if it cannot run at all, that is UNKNOWN, named, never a traceback."""
    try:
        return probe()
    except GeoSyncError as exc:
        return CheckResult(name, Level.UNKNOWN, exc.message,
                           exc.hint or "fix the problem named and run the check again")
    except Exception as exc:
        return CheckResult(name, Level.UNKNOWN, f"check failed: {type(exc).__name__}: {exc}",
                           "run the check again; if it persists, report it with this line")


def worst(results: Iterable[CheckResult]) -> Level:
    return max((r.level for r in results), key=_SEVERITY.__getitem__, default=Level.OK)


@dataclass(frozen=True)
class Verdict:
    """The one-line answer: Healthy, Degraded or Unhealthy, with the checks behind it."""

    level: Level
    reasons: tuple[CheckResult, ...]

    @property
    def word(self) -> str:
        return VERDICTS[self.level]

    def line(self) -> str:
        if not self.reasons:
            return self.word
        return f"{self.word}: " + "; ".join(f"{r.name}: {r.message}" for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.word, "exit_code": int(self.level),
                "reasons": [r.to_json() for r in self.reasons]}


def verdict(results: Iterable[CheckResult]) -> Verdict:
    results = list(results)
    level = worst(results)
    return Verdict(level, tuple(r for r in results if r.level is not Level.OK))
