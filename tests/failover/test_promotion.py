"""End to end: a drill, a planned promotion with RPO 0, the third site repointed
without copying again, the old primary fenced; an unplanned promotion that lists what
it lost, and an old primary that comes back and can never take writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from geo_sync.errors import SplitBrain
from geo_sync.primary.models import CatalogItem
from geo_sync.secondary.runtime import open_runtime
from geo_sync.workload import git
from tests.compare import differences
from tests.deployment import Deployment, wait_for
from tests.failover.sites import free_port, geo_sync, trio
from tests.sites import GEO_SYNC, status_of, wait_for_http

MODES = ["production", "embedded"]


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino
            for p in (root / "artifacts").rglob("*") if p.is_file()}


# Three sites and their processes on two shared cores: generous bounds, no speed check.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", MODES)
def test_a_planned_promotion_loses_nothing_and_the_others_follow_without_copying_again(
        mode: str, tmp_path: Path) -> None:
    with trio(mode, tmp_path) as sites:
        one, three = sites.one, sites.three
        primary = sites.primary
        workload = one.workload(tmp_path / "scratch")
        workload.initial(repositories=3, artifacts=8, logs=2)
        assert primary.cli("primary", "install-hooks").returncode == 0
        one.start()
        three.start()
        workload.round(0)
        workload.round(1)
        one.wait_converged()
        three.wait_converged()

        # The drill: RPO 0, ready, a report file; the planned one leaves maintenance off.
        drill = one.secondary.cli("drill", "--json", "--timeout", "60", check=False)
        report = json.loads(drill.stdout)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert report["ready"] and report["rpo_now"]["zero"] and not report["blockers"]
        assert Path(report["report_file"]).is_file()
        planned = one.secondary.cli("drill", "--planned", "--json", "--timeout", "60",
                                    "--report", str(tmp_path / "drill.json"), check=False)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert json.loads((tmp_path / "drill.json").read_text())["catch_up_seconds"] is not None
        assert "taking writes" in primary.cli("primary", "maintenance", "status").stdout

        before = _inodes(three.secondary.settings.mirror_root)
        port = free_port()
        result, promoted = sites.promote(port=port)
        assert result.returncode == 0, result.stdout + result.stderr
        assert promoted["planned"] and promoted["rpo"]["zero"]
        assert promoted["old_primary_fenced"] and promoted["epoch"] == 2
        assert promoted["secondaries_to_register"] == ["s3"]
        one.stop_all()
        assert "promoted to primary" in one.secondary.cli("secondary", "run",
                                                          check=False).stderr

        # The old primary refuses publishes and pushes, and names the new one.
        storage = primary.settings.storage_root
        (storage / "artifacts" / "late.zip").write_bytes(b"late")
        refused = primary.cli("primary", "publish", "artifact", "created", "--path",
                              "late.zip", check=False)
        assert refused.returncode == 1 and "demoted" in refused.stderr
        assert f"127.0.0.1:{port}" in refused.stderr
        repo = workload.repositories[-1]
        work = workload._worktree(repo)
        (work / "late.txt").write_text("late")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "late", cwd=work)
        push = subprocess.run(["git", "push", "primary", "main"], cwd=work,
                              capture_output=True, text=True, check=False)
        assert push.returncode != 0 and "demoted" in push.stderr
        status = three.status()
        assert status["primary"]["demoted"] is True

        new = sites.new_primary(port)
        moved = sites.repoint_three(new)
        # The same data: at most 1 % of it is copied again (a repository whose
        # checksum arrived after its event may be fetched again: git sends nothing new).
        assert moved["epoch"] == 2 and moved["to_copy_bytes"] <= moved["kept_bytes"] / 100, \
            moved

        # New writes on the new primary reach the third site.
        fresh = sites.write_on(new, tmp_path / "scratch-new", seed=11)
        fresh.create_repository("after/failover.git", commits=2)
        fresh.push("after/failover.git")
        fresh.upload_artifact("after/failover.zip", 4096)
        follower = Deployment(mode, new, three.secondary, three.logs,
                              processes=three.processes)
        follower.wait_converged()
        after = _inodes(three.secondary.settings.mirror_root)
        assert {path: after.get(path) for path in before} == before, \
            "copies the third site already had were downloaded again"
        assert not differences(new.settings.storage_root, three.secondary.settings.mirror_root)
        assert "epoch followed 2" in three.secondary.cli("status", check=False).stdout


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", MODES)
def test_an_unplanned_promotion_lists_what_it_lost_and_the_old_primary_never_writes_again(
        mode: str, tmp_path: Path) -> None:
    with trio(mode, tmp_path) as sites:
        one, three = sites.one, sites.three
        primary = sites.primary
        workload = one.workload(tmp_path / "scratch")
        workload.initial(repositories=2, artifacts=6, logs=2)
        one.start()
        three.start()
        one.wait_converged()
        three.wait_converged()
        # An event s1 applies (its backfill applied none): the last one before the loss.
        workload.upload_artifact("pipelines/applied/artifacts.zip", 1024)
        wait_for(one.caught_up, "s1 to apply an event")
        # s1's workers die (embedded: with its cursor); the primary goes on taking
        # writes, then dies mid-workload.
        one.kill_workers()
        workload.round(0)
        if one.production:
            wait_for(one.caught_up, "s1 to see the round's events")
        assert primary.process is not None
        primary.process.send_signal(signal.SIGKILL)
        primary.process.wait()
        workload.upload_artifact("pipelines/never-seen/artifacts.zip", 2048)

        drill = one.secondary.cli("drill", "--json", "--timeout", "60", check=False)
        assert drill.returncode == 1
        assert "does not answer" in " ".join(json.loads(drill.stdout)["blockers"])

        port = free_port()
        result, promoted = sites.promote("--force", port=port)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not promoted["planned"] and not promoted["rpo"]["zero"]
        assert not promoted["old_primary_fenced"]
        listed = {(i["type"], i["path"]) for i in promoted["rpo"]["items_listed"]}
        one.stop_all()
        new = sites.new_primary(port)
        # It keeps trying to fence the old primary, and says so.
        assert "old primary not yet fenced" in geo_sync(new.config, "check", "--json").stdout
        with new.engine.connect() as conn:
            kept = {(r.replicable_type, r.path, r.checksum) for r in conn.execute(
                select(CatalogItem.replicable_type, CatalogItem.path, CatalogItem.checksum))}
        last_applied = promoted["rpo"]["last_event_applied"]["at"]
        with primary.engine.connect() as conn:
            old = conn.execute(select(CatalogItem.replicable_type, CatalogItem.path,
                                      CatalogItem.checksum, CatalogItem.updated_at)).all()
        kept_paths = {(t, p) for t, p, _ in kept}
        for row in old:
            if (row.replicable_type, row.path) in kept_paths:
                continue
            # Lost: either listed by name, or changed after the last event applied.
            assert (row.replicable_type, row.path) in listed or \
                row.updated_at.isoformat() > last_applied, row
        if one.production:
            assert listed, "the items s1's dead workers left were not listed"
        assert len(kept_paths) < len(old), "the round s1 never applied was not lost"

        # The third site follows the new primary; the old one comes back, unfenced.
        env = dict(os.environ, S3_SECRET=sites.three_secret)
        assert geo_sync(new.config, "primary", "add-secondary", "s3", "--secret-env",
                        "S3_SECRET", env=env).returncode == 0
        three.stop_all()
        repointed = three.secondary.cli("secondary", "repoint", new.url, check=False)
        assert repointed.returncode == 0, repointed.stderr
        # The old primary comes back (no secondary reaches it): it refuses writes from
        # its start, and the new primary's fence loop fences it.
        primary.start()
        (primary.settings.storage_root / "artifacts" / "x.zip").write_bytes(b"x")
        refused = primary.cli("primary", "publish", "artifact", "created", "--path", "x.zip",
                              check=False)
        assert refused.returncode == 1, refused.stdout
        assert "unclean shutdown" in refused.stderr or "demoted" in refused.stderr

        def site(config: Path) -> dict[str, Any]:
            return dict(status_of(config)["site"])

        def fenced() -> bool:
            return bool(site(primary.config)["new_primary_url"] == new.url)
        wait_for(fenced, "the new primary's fence loop to fence the old one", 180)
        assert site(primary.config)["demoted"] is True
        assert site(new.config)["unfenced_old_primaries"] == []
        refused = primary.cli("primary", "publish", "artifact", "created", "--path", "x.zip",
                              check=False)
        assert refused.returncode == 1 and "demoted" in refused.stderr
        old_settings = three.secondary.settings.model_copy(
            update={"primary_url": primary.url})
        runtime = open_runtime(old_settings)
        try:
            with pytest.raises(SplitBrain, match="old primary"):
                runtime.client.head()
        finally:
            runtime.close()

        # It re-joins as a secondary of the new primary, keeping its copies; what only
        # it had (the upload s1 never saw) stays on disk for the operator.
        storage = primary.settings.storage_root
        kept_before = _inodes(storage)
        secret = geo_sync(new.config, "primary", "add-secondary", "old").stdout.strip()
        tracking = sites.database("geo_tracking")
        rejoined = geo_sync(primary.config, "primary", "rejoin", "--primary-url", new.url,
                            "--name", "old", "--secret-env", "OLD_SECRET",
                            *(["--database-url", tracking] if tracking else []),
                            env=dict(os.environ, OLD_SECRET=secret))
        assert rejoined.returncode == 0, rejoined.stdout + rejoined.stderr
        primary.stop()
        config = primary.config.parent / "secondary" / "config.toml"
        run = subprocess.Popen([GEO_SYNC, "--config", str(config), "secondary", "run"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            def settled() -> bool:
                report = status_of(config)
                return (not report["cursor"]["backfill_required"]
                        and all(t["synced"] == t["total"] for t in report["types"].values()))
            wait_for(settled, "the re-joined site to settle", 120)
        finally:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=60)
        with new.engine.connect() as conn:
            on_new = {r.path for r in conn.execute(select(CatalogItem.path).where(
                CatalogItem.replicable_type == "artifact"))}
        after = _inodes(storage)
        for path, inode in kept_before.items():
            if path.removeprefix("artifacts/") in on_new:
                assert after.get(path) == inode, f"{path} was copied again"
        assert (storage / "artifacts" / "pipelines" / "never-seen" / "artifacts.zip").is_file()


# One embedded trio for two behaviours of real processes: a plain crash of the primary
# (no promotion) resumes writes on its followers' next poll, then `promote --serve`.
@pytest.mark.timeout(900)
def test_a_crashed_primary_resumes_on_its_followers_poll_and_promote_serve_serves(
        tmp_path: Path) -> None:
    with trio("embedded", tmp_path) as sites:
        one, three = sites.one, sites.three
        primary = sites.primary
        workload = one.workload(tmp_path / "scratch")
        workload.initial(repositories=1, artifacts=3, logs=1)
        one.start()
        three.start()
        one.wait_converged()
        three.wait_converged()

        # kill -9 with both followers stopped meanwhile: writes wait for each of them.
        one.stop_all()
        three.stop_all()
        assert primary.process is not None
        primary.process.send_signal(signal.SIGKILL)
        primary.process.wait()
        primary.start()
        (primary.settings.storage_root / "artifacts" / "after-crash.zip").write_bytes(b"a")
        publish_it = ("primary", "publish", "artifact", "created", "--path", "after-crash.zip")
        refused = primary.cli(*publish_it, check=False)
        assert refused.returncode == 1 and "from secondary s1, s3" in refused.stderr, \
            refused.stderr

        def waiting() -> list[str]:
            report = status_of(primary.config)
            return list(report["site"]["awaiting_confirmation"])
        one.start()
        wait_for(lambda: waiting() == ["s3"], "s1's poll to confirm the epoch")
        assert primary.cli(*publish_it, check=False).returncode == 1
        three.start()
        wait_for(lambda: not waiting(), "s3's poll to confirm the epoch")
        assert primary.cli(*publish_it).returncode == 0
        one.wait_converged()

        # `promote --serve`: planned, then it serves the Geo API itself.
        port = free_port()
        out = (tmp_path / "promote.log").open("wb")
        proc = subprocess.Popen([GEO_SYNC, "--config", str(one.secondary.config), "promote",
                                 "--serve", "--listen", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def stop_promote() -> None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        sites.stack.callback(stop_promote)
        assert _served(proc, port), (tmp_path / "promote.log").read_text()
        new = sites.new_primary(port, serve=False)
        one.stop_all()
        sites.repoint_three(new)
        fresh = sites.write_on(new, tmp_path / "scratch-new", seed=12)
        fresh.create_repository("after/serve.git", commits=1)
        fresh.push("after/serve.git")
        Deployment("embedded", new, three.secondary, three.logs,
                   processes=three.processes).wait_converged()
        stop_promote()
        report = (tmp_path / "promote.log").read_text()
        assert "promoted to primary at epoch 2 (planned)" in report, report
        assert "RPO: 0 (nothing lost)" in report


def _served(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether `promote --serve` got as far as serving (it prints once it answers)."""
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/geo/v1/openapi.json", proc, 300)
    except RuntimeError:
        return False
    return True
