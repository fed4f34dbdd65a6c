"""Git hooks that publish repository events on every push, for any git server that
keeps bare repositories on disk."""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from geo_sync.db import write_transaction
from geo_sync.errors import InvalidInput
from geo_sync.paths import TEMP_PREFIX, resolve_inside
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from replicators.repository import RepositoryReplicator, is_bare_repository

MARKER = "# geo-sync post-receive hook"
TEMPLATE_DIR = ".geo-sync-template"


def hook_script(executable: str, config: Path) -> str:
    """The post-receive hook: publish, and never fail the push (scan is the safety net)."""
    return f"""#!/bin/sh
{MARKER} (installed by `geo-sync primary install-hooks`)
# Publishes a repository event for every push. A failure does not block the push;
# `geo-sync primary scan` picks up anything a failed hook missed.
GEO_SYNC_CONFIG={shlex.quote(str(config))} {shlex.quote(executable)} \\
    primary hook-post-receive "$PWD" >/dev/null || \\
    echo "geo-sync: could not publish this push; run 'geo-sync primary scan'" >&2
exit 0
"""


@dataclass(frozen=True)
class HookReport:
    """Where the hook went, and repositories left alone because they had a foreign hook."""

    installed: list[str]
    foreign: list[str]
    template: Path


def _write_executable(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    Path(tmp).chmod(0o755)
    Path(tmp).replace(path)


def install_hooks(repos_root: Path, executable: str, config: Path) -> HookReport:
    """Install the hook into every bare repository under ``repos_root`` and a template dir.

    A repository that already has a post-receive hook of its own is not touched.
    """
    script = hook_script(executable, config)
    installed, foreign = [], []
    for relpath in RepositoryReplicator.discover(repos_root):
        hook = repos_root / relpath / "hooks" / "post-receive"
        if hook.exists() and MARKER not in hook.read_text(errors="replace"):
            foreign.append(relpath)
            continue
        _write_executable(hook, script)
        installed.append(relpath)
    template = repos_root / TEMPLATE_DIR
    _write_executable(template / "hooks" / "post-receive", script)
    return HookReport(installed=installed, foreign=foreign, template=template)


def publish_push(engine: Engine, repos_root: Path, repository: Path) -> int:
    """Publish ``created`` or ``updated`` for the repository a push just changed."""
    try:
        relpath = repository.resolve().relative_to(repos_root.resolve()).as_posix()
    except ValueError:
        raise InvalidInput(
            f"{repository} is not under the repositories root {repos_root}",
            hint="the hook must run inside a repository below the configured storage root",
        ) from None
    RepositoryReplicator.validate_path(relpath)
    full = resolve_inside(repos_root, relpath)
    if not is_bare_repository(full):
        raise InvalidInput(f"{repository} is not a bare git repository")
    found = RepositoryReplicator.describe(full, relpath)
    with write_transaction(engine) as conn:
        known = conn.execute(
            select(CatalogItem.id).where(
                CatalogItem.replicable_type == RepositoryReplicator.name,
                CatalogItem.path == relpath,
            )
        ).first()
        event = "updated" if known else "created"
        return publish(
            conn,
            Change(RepositoryReplicator.name, event, relpath, size=found.size,
                   checksum=found.checksum),
        )
