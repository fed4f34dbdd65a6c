"""`geo-sync primary publish` given things that are not what it expects: one line
naming what was wrong, exit status 1, no traceback, no hang, nothing published."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from geo_sync.primary.models import Event
from tests.sites import GEO_SYNC, PrimarySite


def _events(site: PrimarySite) -> int:
    with site.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())


def _refused(site: PrimarySite, *args: str | bytes, expect: str) -> None:
    before = _events(site)
    # bytes arguments reach the process as they are: that is how a non-UTF-8 name arrives.
    result = subprocess.run([GEO_SYNC, "--config", str(site.config), "primary", "publish",
                             *args], capture_output=True, timeout=60, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert expect in stderr, stderr
    assert _events(site) == before


@pytest.fixture
def artifacts(primary: PrimarySite) -> Path:
    root = primary.storage("artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_a_size_beyond_64_bits_is_one_line_naming_size(primary: PrimarySite,
                                                        artifacts: Path) -> None:
    (artifacts / "a.bin").write_bytes(b"x")
    for size in (str(2**63), str(2**64 + 5), "9" * 400):
        _refused(primary, "artifact", "created", "--path", "a.bin", "--size", size,
                 "--checksum", "c" * 64, expect="size")


def test_a_directory_given_as_path_is_refused(primary: PrimarySite, artifacts: Path) -> None:
    (artifacts / "adir" / "inner").mkdir(parents=True)
    _refused(primary, "artifact", "created", "--path", "adir", expect="directory")
    _refused(primary, "job_log", "created", "--path", "adir", expect="job_logs")
    _refused(primary, "repository", "created", "--path", "notrepo.git",
             expect="does not exist")


def test_a_fifo_given_as_path_is_refused_without_hanging(primary: PrimarySite,
                                                           artifacts: Path) -> None:
    os.mkfifo(artifacts / "pipe")
    _refused(primary, "artifact", "created", "--path", "pipe", expect="not a regular file")


def test_a_path_that_does_not_exist_is_refused(primary: PrimarySite, artifacts: Path) -> None:
    _refused(primary, "artifact", "created", "--path", "missing.bin", expect="does not exist")


@pytest.mark.parametrize("option", ["--path", "--record-id"])
def test_a_name_that_is_not_utf8_is_refused(primary: PrimarySite, artifacts: Path,
                                            option: str) -> None:
    name = b"caf\xe9.bin"  # Latin-1, not UTF-8
    with open(os.path.join(os.fsencode(artifacts), name), "wb") as handle:
        handle.write(b"x")
    args: list[str | bytes] = ["artifact", "created", "--path", name]
    if option == "--record-id":
        (artifacts / "ok.bin").write_bytes(b"x")
        args = ["artifact", "created", "--path", "ok.bin", "--record-id", name]
    _refused(primary, *args, expect="UTF-8" if option == "--path" else "record_id")


def test_a_checksum_with_a_trailing_newline_is_refused(primary: PrimarySite,
                                                       artifacts: Path) -> None:
    (artifacts / "a.bin").write_bytes(b"x")
    _refused(primary, "artifact", "created", "--path", "a.bin", "--size", "1",
             "--checksum", "a" * 64 + "\n", expect="checksum")


def test_a_symlink_out_of_the_root_is_refused_even_without_inspection(
    primary: PrimarySite, artifacts: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (artifacts / "link").symlink_to(outside)
    for extra in ([], ["--no-inspect"], ["--size", "1", "--checksum", "d" * 64]):
        _refused(primary, "artifact", "created", "--path", "link/secret", *extra,
                 expect="outside")
