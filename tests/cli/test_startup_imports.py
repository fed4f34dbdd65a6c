"""What a command imports at start-up, for the commands an operator and the suite run
most (`--help`, `status --json`, `check --json` on a secondary): start-up was most of
their time. Which modules are loaded, not how long anything takes (no timed assertion).

Each runs the `geo-sync` console script's entry point in a fresh interpreter, as the
console script does, and lists ``sys.modules`` when the process exits (status and check
exit through ``sys.exit`` with their verdict)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.sites import SecondarySite

MARK = "MODULES:"
PROBE = (
    "import atexit, json, sys\n"
    f"atexit.register(lambda: print({MARK!r} + json.dumps(sorted(sys.modules)), "
    "file=sys.stderr))\n"
    "from geo_sync.cli.main import main\n"
    "sys.argv = ['geo-sync', *sys.argv[1:]]\n"
    "main()\n"
)

# Needed only by other commands: the workers and brokers (dramatiq, redis), servers
# (uvicorn, starlette), git transfers and checksums (pygit2), tables (rich, pygments),
# metrics (prometheus_client), migrations (alembic).
NOT_FOR_STATUS = {"pygit2", "dramatiq", "redis", "rich", "pygments", "prometheus_client",
                  "uvicorn", "starlette", "alembic"}
# `--help` lists the commands from cli.main.COMMANDS: none of the product's libraries.
NOT_FOR_HELP = NOT_FOR_STATUS | {"httpx", "sqlalchemy", "psycopg", "pydantic",
                                 "pydantic_settings", "structlog"}
# The data types' registration without their classes (replicators.type_names).
LIGHT_REPLICATORS = {"replicators", "replicators.type_names"}


def _run(*args: str, env: dict[str, str] | None = None
         ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, check=False, timeout=120, env=env)
    lines = [line for line in done.stderr.splitlines() if line.startswith(MARK)]
    assert lines, done.stderr[-2000:]
    return done, set(json.loads(lines[-1].removeprefix(MARK)))


def _packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_imports_none_of_the_libraries() -> None:
    done, modules = _run("--help")
    assert done.returncode == 0, done.stderr
    assert "status" in done.stdout
    assert not _packages(modules) & NOT_FOR_HELP
    assert not {m for m in modules if m.startswith("replicators")}


def test_secondary_status_json_imports_no_replicator_class_or_daemon_library(
        secondary: SecondarySite) -> None:
    done, modules = _run("--config", str(secondary.config), "status", "--json")
    report = json.loads(done.stdout)
    assert set(report["types"]) >= {"artifact"}  # every type, by name, without its class
    assert not _packages(modules) & NOT_FOR_STATUS, _packages(modules) & NOT_FOR_STATUS
    assert {m for m in modules if m.startswith("replicators")} <= LIGHT_REPLICATORS


def test_secondary_check_json_imports_no_replicator_class(secondary: SecondarySite) -> None:
    done, modules = _run("--config", str(secondary.config), "check", "--json")
    assert json.loads(done.stdout)["role"] == "secondary"
    assert not _packages(modules) & NOT_FOR_STATUS, _packages(modules) & NOT_FOR_STATUS
    assert {m for m in modules if m.startswith("replicators")} <= LIGHT_REPLICATORS
