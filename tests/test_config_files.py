"""The deployable files (config/, docker-compose.yml, Dockerfile) stay valid.

There is no Docker engine here, so the compose file is checked for what can be
checked: it parses, every geo-sync service runs a real command, every mounted
file exists, the mounted configs load with the compose environment applied, and
the Toxiproxy link points from the secondary to the primary.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet

from geo_sync.cli.main import cli
from geo_sync.settings import load_settings
from tests.faults.rig import PROXY

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
SECRET = "s" * 40


def _help_works(args: list[str]) -> None:
    """`geo-sync <subcommands> --help` succeeds for the subcommand path in ``args``."""
    path = []
    for arg in args:
        if arg.startswith("-"):
            break
        path.append(arg)
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, f"geo-sync {' '.join(args)}: {result.output}"


@pytest.mark.parametrize("example", sorted(CONFIG.glob("*.example.toml")), ids=lambda p: p.name)
def test_example_configs_load(example: Path) -> None:
    settings = load_settings(example)
    assert settings.role in example.name


def test_systemd_units_run_existing_commands() -> None:
    units = sorted((CONFIG / "systemd").glob("*.service"))
    assert len(units) == 4
    for unit in units:
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                _help_works(line.split("=", 1)[1].split()[1:])


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package: systemd)")
UNITS = sorted((CONFIG / "systemd").glob("*.service"))


def _installed_units(tmp_path: Path) -> list[Path]:
    """The units as they would be installed, with /usr/local/bin/geo-sync pointing at this
    checkout's geo-sync (systemd-analyze verify checks that the command exists)."""
    geo_sync = Path(sys.executable).parent / "geo-sync"
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/local/bin/geo-sync", str(geo_sync)))
        copies.append(copy)
    return copies


def test_systemd_units_name_no_virtualenv_path() -> None:
    for unit in UNITS:
        text = unit.read_text()
        assert ".venv" not in text and "/opt/" not in text, unit.name
        assert "ExecStart=/usr/local/bin/geo-sync " in text, unit.name


@needs_systemd_analyze
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no",
                             *map(str, _installed_units(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_are_hardened(unit: Path) -> None:
    result = subprocess.run([str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager",
                             str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    # Before hardening these rated 8.7 EXPOSED; 1.6 OK now. Keep them at OK or better.
    assert float(match.group(1)) <= 2.0, result.stdout


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _geo_sync_commands(service: dict[str, Any]) -> list[list[str]]:
    """The geo-sync argument lists a service runs (its command, or each one in sh -c)."""
    command = service.get("command", [])
    if service.get("entrypoint") != ["sh", "-c"]:
        return [command]
    commands = []
    for part in re.split(r"&&|\|\||[()]", " ".join(command)):
        words = shlex.split(part)
        if words and words[0] == "exec":
            words = words[1:]
        if words and words[0] == "geo-sync":
            commands.append(words[1:])
    return commands


def test_compose_services_run_real_geo_sync_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "toxiproxy", "primary", "secondary", "worker"} <= set(services)
    seen = 0
    for service in services.values():
        if "build" in service:
            for args in _geo_sync_commands(service):
                _help_works(args)
                seen += 1
    assert seen >= 5


def test_compose_mounts_exist_and_configs_load_with_its_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        env = service.get("environment", {})
        if "GEO_SYNC_CONFIG" in env:
            mounted = next(v for v in service["volumes"] if env["GEO_SYNC_CONFIG"] in v)
            for key, value in env.items():
                if key.startswith("GEO_SYNC_") and key != "GEO_SYNC_CONFIG":
                    monkeypatch.setenv(key, SECRET if "${" in str(value) else str(value))
            settings = load_settings(ROOT / mounted.split(":", 1)[0])
            if settings.secondary:
                assert settings.secondary.secret == SECRET, "the env secret must win"
            monkeypatch.delenv("GEO_SYNC_SECONDARY__SECRET", raising=False)


def test_the_secondary_reaches_the_primary_through_toxiproxy(compose: dict[str, Any]) -> None:
    proxies = json.loads((CONFIG / "compose" / "toxiproxy.json").read_text())
    [proxy] = proxies
    upstream_host, upstream_port = proxy["upstream"].split(":")
    primary = load_settings(CONFIG / "compose" / "primary.toml").require_primary()
    secondary = load_settings(CONFIG / "compose" / "secondary.toml").require_secondary()
    assert upstream_host in compose["services"]
    assert int(upstream_port) == primary.listen_port
    assert secondary.primary_url == f"http://toxiproxy:{proxy['listen'].rsplit(':', 1)[1]}"


def test_compose_toxiproxy_has_the_proxy_the_fault_matrix_drives(compose: dict[str, Any]) -> None:
    """TOXIPROXY_URL can point the matrix (tests/faults) at compose's real Toxiproxy."""
    names = [p["name"] for p in json.loads((CONFIG / "compose" / "toxiproxy.json").read_text())]
    assert names == [PROXY]
    ports = compose["services"]["toxiproxy"]["ports"]
    listen = json.loads((CONFIG / "compose" / "toxiproxy.json").read_text())[0]["listen"]
    assert any(str(p).endswith(":8474:8474") for p in ports), "the API, for toxiproxy-python"
    assert any(str(p).endswith(":" + listen.rsplit(":", 1)[1]) for p in ports), \
        "the proxy itself, for a secondary outside compose"


def test_the_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_the_docker_image_installs_the_runtime_lock_without_test_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements.lock" in dockerfile
    assert "requirements-dev.lock" not in dockerfile
    runtime = {line.split("==")[0].lower()
               for line in (ROOT / "requirements.lock").read_text().splitlines()
               if "==" in line and not line.startswith(" ")}
    dev = {line.split("==")[0].lower()
           for line in (ROOT / "requirements-dev.lock").read_text().splitlines()
           if "==" in line and not line.startswith(" ")}
    assert {"pytest", "mypy", "ruff", "hypothesis", "schemathesis"} <= dev
    assert not runtime & {"pytest", "mypy", "ruff", "hypothesis", "schemathesis"}
    assert not runtime & dev, "a package is pinned in both locks"


def test_requires_python_allows_3_11_to_3_13() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    spec = SpecifierSet(re.search(r'requires-python = "([^"]+)"', pyproject).group(1))
    assert all(version in spec for version in ("3.11", "3.12", "3.13"))


def test_compose_publishes_nothing_beyond_loopback(compose: dict[str, Any]) -> None:
    published = [(name, str(port)) for name, service in compose["services"].items()
                 for port in service.get("ports", [])]
    assert published, "the compose file publishes the Geo API for the host"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_swallows_no_errors(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        command = " ".join(map(str, service.get("command", [])))
        assert "|| true" not in command and "||true" not in command, name
