"""A data type is one class with two halves: the primary's code reaches only the
``Original`` half, the secondary's and verification's only the ``Copy`` half."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from replicators.base import Copy, DataType, Original, Replicator
from replicators.type_map import REPLICATORS, copies, copy_for, original_for, originals

ROOT = Path(__file__).resolve().parents[2]

#: Names that hand out both halves of a type, or the other side's half.
BOTH = {"Replicator", "replicator_for"}
COPY_SIDE = {"Copy", "copy_for", "copies"} | BOTH
ORIGINAL_SIDE = {"Original", "original_for", "originals", "git_original"} | BOTH

PRIMARY = [*sorted((ROOT / "geo_sync" / "primary").glob("*.py")), ROOT / "geo_sync/cli/primary.py"]
SECONDARY = [*sorted((ROOT / "geo_sync" / "secondary").glob("*.py")),
             *sorted((ROOT / "verification").glob("*.py")), ROOT / "geo_sync/cli/recovery.py"]


def _imported_from_replicators(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("replicators"):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", PRIMARY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_primarys_code_imports_only_the_original_half(path: Path) -> None:
    assert not _imported_from_replicators(path) & COPY_SIDE


@pytest.mark.parametrize("path", SECONDARY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_secondarys_code_imports_only_the_copy_half(path: Path) -> None:
    assert not _imported_from_replicators(path) & ORIGINAL_SIDE


def test_the_two_halves_share_nothing_but_what_the_type_is() -> None:
    shared = {name for name in vars(Original) if not name.startswith("_")} & {
        name for name in vars(Copy) if not name.startswith("_")}
    assert shared == set()
    assert issubclass(Original, DataType) and issubclass(Copy, DataType)


@pytest.mark.parametrize("name", sorted(REPLICATORS))
def test_every_registered_type_is_one_class_holding_both_halves(name: str) -> None:
    cls = REPLICATORS[name]
    assert issubclass(cls, Replicator)
    assert original_for(name) is cls and copy_for(name) is cls
    assert cls in originals() and cls in copies()
