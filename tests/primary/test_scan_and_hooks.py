"""`primary scan` and the post-receive hook publish what changed on disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy import select

from geo_sync.primary.hooks import drain_spool, spool_dir
from geo_sync.primary.models import CatalogItem, Event
from replicators.checksums import repository_checksum
from tests.deployment import wait_for
from tests.gitutil import git, make_repository
from tests.sites import PrimarySite, primary_site


def _events(site: PrimarySite) -> list[tuple[str, str, str]]:
    with site.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(Event.replicable_type, Event.event, Event.path).order_by(Event.id))]


def _catalog(site: PrimarySite) -> dict[str, str | None]:
    with site.engine.connect() as conn:
        return dict(conn.execute(select(CatalogItem.path, CatalogItem.checksum)).all())


def test_scan_publishes_new_changed_and_vanished_items(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        make_repository(site.storage("repositories") / "g/r.git", tmp_path / "work")
        (site.storage("artifacts") / "b").mkdir()
        (site.storage("artifacts") / "b/a.bin").write_bytes(b"artifact")
        (site.storage("job_logs") / "1.log").write_bytes(b"line\n")
        first = site.cli("primary", "scan")
        assert "3 change(s) published" in first.stdout
        assert sorted(_events(site)) == sorted([("repository", "created", "g/r.git"),
                                                ("artifact", "created", "b/a.bin"),
                                                ("job_log", "created", "1.log")])
        assert _catalog(site)["g/r.git"] == repository_checksum(
            site.storage("repositories") / "g/r.git")
        assert "0 change(s)" in site.cli("primary", "scan").stdout

        with (site.storage("job_logs") / "1.log").open("ab") as handle:
            handle.write(b"more\n")
        (site.storage("artifacts") / "b/a.bin").unlink()
        git("branch", "-D", "feature", cwd=site.storage("repositories") / "g/r.git")
        dry = site.cli("primary", "scan", "--dry-run")
        assert "would publish job_log appended 1.log" in dry.stdout
        assert len(_events(site)) == 3, "dry run published something"
        site.cli("primary", "scan")
        assert sorted(_events(site)[3:]) == sorted([("repository", "updated", "g/r.git"),
                                                    ("artifact", "deleted", "b/a.bin"),
                                                    ("job_log", "appended", "1.log")])


def test_scan_skips_symlinks_and_unsafe_names(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        (tmp_path / "outside.bin").write_bytes(b"x")
        (site.storage("artifacts") / "link.bin").symlink_to(tmp_path / "outside.bin")
        (site.storage("artifacts") / "back\\slash.bin").write_bytes(b"x")
        result = site.cli("primary", "scan")
        assert _events(site) == []
        assert "back\\slash.bin" in result.stderr


def _push_new_commit(work: Path, name: str) -> subprocess.CompletedProcess[str]:
    (work / name).write_text(name)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", name, cwd=work)
    return git("push", "-q", "bare", "main", cwd=work)


def test_installed_hooks_record_pushes_and_the_drain_publishes_them(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        site.cli("primary", "install-hooks")
        assert (bare / "hooks/post-receive").stat().st_mode & 0o111
        work = tmp_path / "work"
        _push_new_commit(work, "first.txt")
        spool = spool_dir(site.settings.storage_root)
        assert len(list(spool.glob("[0-9]*"))) == 1, "the hook did not record the push"
        assert _events(site) == [], "the hook published by itself"

        assert drain_spool(site.engine, site.settings.storage_root) == 1
        assert _events(site) == [("repository", "created", "g/r.git")]
        _push_new_commit(work, "second.txt")
        git("push", "-q", "bare", ":feature", cwd=work)
        assert drain_spool(site.engine, site.settings.storage_root) == 1
        assert _events(site)[1:] == [("repository", "updated", "g/r.git")], \
            "two pushes before a drain should make one event"
        assert _catalog(site)["g/r.git"] == repository_checksum(bare)
        assert list(spool.glob("[0-9]*")) == []


def test_a_served_primary_publishes_pushes_on_its_own(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        site.cli("primary", "install-hooks")
        _push_new_commit(tmp_path / "work", "pushed.txt")
        wait_for(lambda: _events(site) == [("repository", "created", "g/r.git")],
                 "`primary serve` to publish the recorded push", timeout=30)
        assert _catalog(site)["g/r.git"] == repository_checksum(bare)


def test_a_hook_that_cannot_record_never_fails_the_push(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        site.cli("primary", "install-hooks")
        shutil.rmtree(spool_dir(site.settings.storage_root))
        pushed = _push_new_commit(tmp_path / "work", "pushed.txt")
        assert "run 'geo-sync primary scan'" in pushed.stderr
        assert git("rev-parse", "main", cwd=bare).stdout == \
            git("rev-parse", "main", cwd=tmp_path / "work").stdout
        site.cli("primary", "scan")
        assert _events(site) == [("repository", "created", "g/r.git")]


def test_a_spool_entry_naming_no_repository_is_kept_aside(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        site.cli("primary", "install-hooks")
        spool = spool_dir(site.settings.storage_root)
        (spool / "1-1").write_text(f"{tmp_path}/elsewhere.git\n")
        assert drain_spool(site.engine, site.settings.storage_root) == 0
        assert _events(site) == []
        assert (spool / "rejected" / "1-1").read_text() == f"{tmp_path}/elsewhere.git\n"
        assert not (spool / "1-1").exists()


def test_a_repository_with_its_own_hook_is_left_alone(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        (bare / "hooks/post-receive").write_text("#!/bin/sh\necho mine\n")
        result = site.cli("primary", "install-hooks")
        assert "left g/r.git alone" in result.stderr
        assert (bare / "hooks/post-receive").read_text() == "#!/bin/sh\necho mine\n"
