"""Three sites for the failover tests: a primary, the secondary to promote (s1) and a
third site (s3), each secondary with its real processes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geo_sync.db import make_engine, write_transaction
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.secondaries import add_secondary
from geo_sync.secondary.site import init_secondary
from geo_sync.settings import load_settings
from geo_sync.workload import Workload
from tests.deployment import TUNING, Deployment, deployment_for, flush_queue, unique_queue
from tests.services import REDIS_URL, temporary_database
from tests.sites import GEO_SYNC, PrimarySite, SecondarySite, free_port


@dataclass
class Trio:
    """The primary with s1 (``one``) and s3 (``three``), each a Deployment."""

    one: Deployment
    three: Deployment
    three_secret: str
    stack: ExitStack

    @property
    def primary(self) -> PrimarySite:
        return self.one.primary

    def database(self, prefix: str) -> str | None:
        """A new empty database in production mode (None: SQLite in embedded mode)."""
        if not self.one.production:
            return None
        return self.stack.enter_context(temporary_database(prefix))

    def promote(self, *args: str, port: int) -> tuple[subprocess.CompletedProcess[str],
                                                       dict[str, Any]]:
        url = self.database("geo_newprimary")
        extra = ["--database-url", url] if url else []
        result = self.one.secondary.cli("promote", "--listen", f"127.0.0.1:{port}", "--json",
                                        *extra, *args, check=False)
        report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
        return result, report

    def new_primary(self, port: int, *, serve: bool = True) -> PrimarySite:
        """The promoted site, served by `primary serve` on its new config (unless
        ``serve`` is false: `promote --serve` serves it)."""
        config = self.one.secondary.config.parent / "primary.toml"
        settings = load_settings(config).require_primary()
        site = PrimarySite(config, settings, make_engine(settings.database_url),
                           f"http://127.0.0.1:{port}", "s3", self.three_secret)
        if serve:
            site.start()
        self.stack.callback(site.engine.dispose)
        self.stack.callback(site.stop)
        return site

    def repoint_three(self, new: PrimarySite) -> dict[str, Any]:
        """Register s3 on the new primary, repoint the third site to it (stopped
        meanwhile) and start it again; `repoint --json`'s report."""
        env = dict(os.environ, S3_SECRET=self.three_secret)
        added = geo_sync(new.config, "primary", "add-secondary", "s3", "--secret-env",
                         "S3_SECRET", env=env)
        assert added.returncode == 0, added.stderr
        self.three.stop_all()
        repointed = self.three.secondary.cli("secondary", "repoint", new.url, "--json",
                                             check=False)
        assert repointed.returncode == 0, repointed.stdout + repointed.stderr
        self.three.start()
        report: dict[str, Any] = json.loads(repointed.stdout)
        return report

    def write_on(self, new: PrimarySite, scratch: Path, seed: int) -> Workload:
        """A workload that pushes and uploads on the new primary."""
        def publish_new(change: Change) -> None:
            with write_transaction(new.engine) as conn:
                publish(conn, change)

        return Workload(new.settings.storage_root, scratch, publish_new, seed=seed)


@contextmanager
def trio(mode: str, tmp_path: Path) -> Iterator[Trio]:
    """A primary, s1 and s3 in ``mode`` (see tests.deployment), none of them running."""
    with ExitStack() as stack:
        one = stack.enter_context(deployment_for(mode, tmp_path))
        with write_transaction(one.primary.engine) as conn:
            secret = add_secondary(conn, "s3")
        extra: dict[str, object] = dict(TUNING)
        database_url = None
        broker = "embedded"
        if one.production:
            database_url = stack.enter_context(temporary_database("geo_tracking"))
            queue = unique_queue()
            stack.callback(flush_queue, queue)
            extra["queue_name"] = queue
            broker = REDIS_URL
        directory = tmp_path / "three"
        config = init_secondary(directory, primary_url=one.primary.url, name="s3",
                                secret=secret, database_url=database_url, broker_url=broker,
                                extra=extra)
        settings = load_settings(config).require_secondary()
        site = SecondarySite(config, settings, make_engine(settings.database_url))
        stack.callback(site.engine.dispose)
        logs = tmp_path / "logs3"
        logs.mkdir()
        three = Deployment(mode, one.primary, site, logs)
        stack.callback(three.stop_all)
        yield Trio(one, three, secret, stack)


def geo_sync(config: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GEO_SYNC, "--config", str(config), *args], capture_output=True,
                          text=True, check=False, timeout=300, env=env)


__all__ = ["Trio", "free_port", "geo_sync", "trio"]
