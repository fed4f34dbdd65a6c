"""The primary half of `geo-sync demo`: a real primary, fed and read over the Geo API."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from geo_sync.auth import issue_token
from geo_sync.db import make_engine, write_transaction
from geo_sync.primary.api import create_app
from geo_sync.primary.hooks import install_hooks
from geo_sync.primary.scan import apply_plan, plan_scan
from geo_sync.primary.secondaries import add_secondary
from geo_sync.primary.site import init_primary
from geo_sync.settings import PrimarySettings, load_settings

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "geo-sync demo", "GIT_AUTHOR_EMAIL": "demo@geo-sync.invalid",
    "GIT_COMMITTER_NAME": "geo-sync demo", "GIT_COMMITTER_EMAIL": "demo@geo-sync.invalid",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with a fixed identity; raise with git's own message on failure."""
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY},
        capture_output=True, text=True, check=True,
    ).stdout


@dataclass
class DemoPrimary:
    """A primary in a directory, its settings, and a worktree per repository for pushing."""

    root: Path
    config: Path
    settings: PrimarySettings
    url: str
    secondary: str
    secret: str

    def repo_path(self, name: str) -> Path:
        return self.settings.storage_root / "repositories" / name

    def worktree(self, name: str) -> Path:
        return self.root / "worktrees" / name

    def token(self) -> str:
        return issue_token(self.secondary, self.secret)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


def create_repository(primary: DemoPrimary, name: str, commits: int) -> None:
    """A bare repository with history, a feature branch and a tag, plus a worktree."""
    work = primary.worktree(name)
    git("init", "-q", "-b", "main", str(work))
    for n in range(commits):
        (work / f"file{n}.txt").write_text(f"{name} change {n}\n" * (n + 1))
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", f"change {n}", cwd=work)
    git("branch", "feature", cwd=work)
    git("tag", "-a", "v1.0", "-m", "first release", cwd=work)
    bare = primary.repo_path(name)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    git("remote", "add", "primary", str(bare), cwd=work)


def write_blob(primary: PrimarySettings, type_dir: str, relpath: str, data: bytes) -> str:
    path = primary.storage_root / type_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@contextmanager
def running_primary(root: Path, port: int) -> Iterator[DemoPrimary]:
    """Init a primary under ``root`` and serve its Geo API from a thread."""
    config = init_primary(root / "primary", listen_port=port)
    settings = load_settings(config).require_primary()
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        secret = add_secondary(conn, "demo-secondary")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1",
                                           port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="geo-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the Geo API could not listen on port {port}")
        time.sleep(0.02)
    try:
        yield DemoPrimary(root, config, settings, f"http://127.0.0.1:{port}/api/geo/v1",
                          "demo-secondary", secret)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def publish_existing(primary: DemoPrimary) -> int:
    """Publish everything already on disk, as `primary scan` does."""
    engine = make_engine(primary.settings.database_url)
    try:
        return apply_plan(engine, plan_scan(engine, primary.settings.storage_root))
    finally:
        engine.dispose()


def hook_repositories(primary: DemoPrimary, executable: str) -> None:
    install_hooks(primary.settings.storage_root / "repositories", executable, primary.config)


def read_all_events(
    primary: DemoPrimary, client: httpx.Client, cursor: str
) -> tuple[list[dict[str, Any]], str]:
    """Every event after ``cursor``, page by page, and the cursor after them."""
    events: list[dict[str, Any]] = []
    while True:
        page = client.get("/events", params={"cursor": cursor, "limit": 500},
                          headers=primary.headers()).raise_for_status().json()
        events += page["events"]
        cursor = page["cursor"]
        if not page["more"]:
            return events, cursor
