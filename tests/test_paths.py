from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo_sync.errors import UnsafePath
from geo_sync.paths import InsideRoot, resolve_inside, validate_relpath


@pytest.mark.parametrize("path", ["a", "a/b.bin", "group/sub/project.git", "ünïcode/ok"])
def test_normalized_relative_paths_are_accepted(path: str) -> None:
    assert validate_relpath(path) == path


@pytest.mark.parametrize("path", ["", "/abs", "..", "a/..", "../a", "a/./b", "a//b", "a/",
                                  "a\x00b", "a\tb", "a\\b", "x" * 256, "a/" * 2100, 5, None])
def test_unsafe_paths_are_refused(path: object) -> None:
    with pytest.raises(UnsafePath):
        validate_relpath(path)


def test_a_symlinked_directory_leaving_the_root_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    (root / "inner").symlink_to(root)
    with pytest.raises(UnsafePath, match="outside its storage root"):
        resolve_inside(root, "link/file")
    assert resolve_inside(root, "inner/file") == root / "inner/file"
    assert resolve_inside(root, "not/yet/there") == root / "not/yet/there"


@pytest.fixture(scope="module")
def linked_root() -> Iterator[Path]:
    """A root whose entries lead inside and outside it through directory and file
    symlinks (the tree is only read by the tests using it)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside = base / "root", base / "outside"
        (root / "dir" / "sub").mkdir(parents=True)
        (outside / "dir").mkdir(parents=True)
        (outside / "file").write_bytes(b"x")
        (root / "dir" / "file").write_bytes(b"x")
        (root / "out").symlink_to(outside)
        (root / "in").symlink_to(root / "dir")
        (root / "dir" / "up").symlink_to(root)
        (root / "dir" / "leak").symlink_to(outside / "file")
        (root / "dir" / "alias").symlink_to(root / "dir" / "file")
        yield root


@given(st.lists(st.sampled_from(["dir", "sub", "file", "out", "in", "up", "leak", "alias",
                                 "missing"]), min_size=1, max_size=5))
def test_inside_root_answers_as_resolve_inside_for_every_path(
    linked_root: Path, parts: list[str],
) -> None:
    relpath = "/".join(parts)
    inside = InsideRoot(linked_root)
    for _ in range(2):  # the second time from its cache of directories
        try:
            expected: Path | str = resolve_inside(linked_root, relpath)
        except UnsafePath:
            expected = "refused"
        try:
            found: Path | str = inside(relpath)
        except UnsafePath:
            found = "refused"
        assert found == expected


def test_inside_root_refuses_what_is_not_a_normalized_relative_path(tmp_path: Path) -> None:
    with pytest.raises(UnsafePath, match="old path"):
        InsideRoot(tmp_path)("a/../b", field="old path")
