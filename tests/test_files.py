"""StagedFiles: a batch of files becomes visible only whole, each one durable first;
what could not land leaves no temp file behind and touches nothing it was not named."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from geo_sync.files import StagedFiles
from geo_sync.paths import TEMP_PREFIX


def _leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMP_PREFIX)]


names = st.text(alphabet="abcdef", min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(batch=st.dictionaries(st.tuples(names, names), st.binary(max_size=2048),
                             min_size=1, max_size=30))
def test_every_staged_file_lands_with_its_bytes_and_the_stat_it_has(
        batch: dict[tuple[str, str], bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # A directory and a file of the same name cannot both exist: keep the
        # destinations a proper two-level tree.
        wanted = {root / f"d-{directory}" / name: data
                  for (directory, name), data in batch.items()}
        with StagedFiles() as files:
            for dest, data in wanted.items():
                files.stage(dest, data)
            assert not any(dest.exists() for dest in wanted)  # nothing visible before
            landed = files.commit()
        assert [dest for dest, _stat in landed] == list(wanted)
        for dest, stat in landed:
            assert dest.read_bytes() == wanted[dest]
            now = dest.stat()
            assert (stat.st_ino, stat.st_size, stat.st_mtime_ns) == (
                now.st_ino, now.st_size, now.st_mtime_ns)
        assert _leftovers(root) == []


def test_a_rename_that_fails_lands_the_files_before_it_and_leaves_the_rest_unseen(
        tmp_path: Path) -> None:
    blocker = tmp_path / "jobs" / "2.log"
    blocker.mkdir(parents=True)
    (blocker / "kept").write_bytes(b"not ours to touch")  # a file cannot replace it
    dests = [tmp_path / "jobs" / f"{n}.log" for n in range(5)]
    with StagedFiles() as files:
        for n, dest in enumerate(dests):
            files.stage(dest, f"log {n}".encode())
        try:
            files.commit()
        except OSError:
            pass
        else:
            raise AssertionError("renaming a file over a non-empty directory succeeded")
    assert [dest.read_bytes() for dest in dests[:2]] == [b"log 0", b"log 1"]
    assert not dests[3].exists() and not dests[4].exists()
    assert (blocker / "kept").read_bytes() == b"not ours to touch"
    assert _leftovers(tmp_path) == []


def test_discarded_files_leave_nothing(tmp_path: Path) -> None:
    with StagedFiles() as files:
        files.stage(tmp_path / "a" / "one", b"1")
        files.stage(tmp_path / "b" / "two", b"2")
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "a" / "one").exists()
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # the directories it made stay
