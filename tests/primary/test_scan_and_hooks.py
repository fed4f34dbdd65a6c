"""`primary scan` and the post-receive hook publish what changed on disk."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from geo_sync.primary.models import CatalogItem, Event
from tests.gitutil import git, make_repository
from tests.sites import PrimarySite, primary_site
from verification.checksums import repository_checksum


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


def test_installed_hooks_publish_every_push(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        site.cli("primary", "install-hooks")
        assert (bare / "hooks/post-receive").stat().st_mode & 0o111
        work = tmp_path / "work"
        (work / "new.txt").write_text("new")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "pushed", cwd=work)
        git("push", "-q", "bare", "main", cwd=work)
        git("push", "-q", "bare", ":feature", cwd=work)
        assert _events(site) == [("repository", "created", "g/r.git"),
                                 ("repository", "updated", "g/r.git")]
        assert _catalog(site)["g/r.git"] == repository_checksum(bare)


def test_a_repository_with_its_own_hook_is_left_alone(tmp_path: Path) -> None:
    with primary_site(tmp_path / "p", None, serve=False) as site:
        bare = site.storage("repositories") / "g/r.git"
        make_repository(bare, tmp_path / "work")
        (bare / "hooks/post-receive").write_text("#!/bin/sh\necho mine\n")
        result = site.cli("primary", "install-hooks")
        assert "left g/r.git alone" in result.stderr
        assert (bare / "hooks/post-receive").read_text() == "#!/bin/sh\necho mine\n"
