"""ruff and mypy --strict stay clean on the packages; CI runs them through the suite."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from replicators.type_map import REPLICATORS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "geo_sync", "replicators", "verification", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_contract_holds() -> None:
    """import-linter checks the layers in pyproject.toml: no module imports upward."""
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return {name.strip() for layer in contract["layers"] for name in re.split(r"[|:]", layer)}


def test_every_module_of_the_product_sits_in_a_layer() -> None:
    """A module the contract does not name is not checked: each new top-level module or
    package of geo_sync must be placed in a layer."""
    layered = _layered_modules()
    top_level = {f"geo_sync.{path.stem}" for path in (ROOT / "geo_sync").iterdir()
                 if (path.suffix == ".py" and path.stem != "__init__")
                 or (path.is_dir() and (path / "__init__.py").exists())}
    assert top_level - layered == set()
    assert {"replicators", "verification"} <= layered


def test_importing_the_primary_api_loads_nothing_of_the_secondary() -> None:
    code = ("import sys, geo_sync.primary.api; "
            "print(sorted(m for m in sys.modules if m.startswith('geo_sync.secondary')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_data_type_is_named_outside_replicators() -> None:
    """A new data type is one class in replicators/: nothing else spells a type's name
    or storage directory (old migrations aside: they are history)."""
    words = {w for cls in REPLICATORS.values() for w in (cls.name, cls.storage_dir)}
    spelled = re.compile("|".join(rf"""["']{re.escape(w)}["']""" for w in sorted(words)))
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for package in ("geo_sync", "verification")
             for path in sorted((ROOT / package).rglob("*.py"))
             if "migrations" not in path.parts
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if spelled.search(line)]
    assert found == []


def test_no_data_type_class_is_named_outside_replicators() -> None:
    """The product reaches a type through the map of types (by name, by side, by
    transport), never by importing its class; the synthetic CI workload aside, which
    plays a CI system that knows the types it writes."""
    spelled = re.compile("|".join(rf"\b{cls.__name__}\b" for cls in REPLICATORS.values()))
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for package in ("geo_sync", "verification")
             for path in sorted((ROOT / package).rglob("*.py"))
             if "migrations" not in path.parts and path.name != "workload.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if spelled.search(line)]
    assert found == []
