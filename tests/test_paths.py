from __future__ import annotations

from pathlib import Path

import pytest

from geo_sync.errors import UnsafePath
from geo_sync.paths import resolve_inside, validate_relpath


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
