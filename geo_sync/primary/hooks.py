"""Git hooks that publish repository events on every push, for any git server that
keeps bare repositories on disk.

The hook itself only records the push: it renames a one-line file naming the
repository into the push spool (``<storage_root>/.geo-sync-pushes``), which costs
a shell and two tiny writes, so pushes stay fast at any rate. `primary serve`
drains the spool every ``push_spool_interval_seconds`` and publishes one event
per pushed repository (measuring its size and checksum); pushes made while it is
down wait in the spool and are published when it starts. A push recorded twice
before a drain is published once: the secondary fetches the current state
anyway.
"""

from __future__ import annotations

import shlex
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from geo_sync.db import write_transaction
from geo_sync.errors import GeoSyncError, InvalidInput, SiteReadOnly
from geo_sync.files import write_atomically
from geo_sync.logging import get_logger
from geo_sync.paths import TEMP_PREFIX, resolve_inside
from geo_sync.primary.models import CatalogItem
from geo_sync.primary.publish import Change, publish
from geo_sync.primary.site_state import READ_ONLY_MARKER
from replicators.repository import is_bare_repository
from replicators.type_map import git_original

MARKER = "# geo-sync post-receive hook"
PRE_MARKER = "# geo-sync pre-receive hook"
TEMPLATE_DIR = ".geo-sync-template"
SPOOL_DIR = ".geo-sync-pushes"
REJECTED_DIR = "rejected"
# A hook killed between writing and renaming leaves a temp file; older ones go.
STALE_TEMP_SECONDS = 3600.0

log = get_logger("hooks")


def spool_dir(storage_root: Path) -> Path:
    return storage_root / SPOOL_DIR


def hook_script(spool: Path) -> str:
    """The post-receive hook: record the push in the spool, never fail the push."""
    return f"""#!/bin/sh
{MARKER} (installed by `geo-sync primary install-hooks`)
# Records this push in the spool; `geo-sync primary serve` publishes it within a
# moment, or when it next starts. A failure here does not block the push:
# `geo-sync primary scan` picks up anything a failed hook missed.
spool={shlex.quote(str(spool))}
name="$(date +%s%N)-$$"
if ! {{ printf '%s\\n' "$PWD" >"$spool/{TEMP_PREFIX}$name" &&
       mv "$spool/{TEMP_PREFIX}$name" "$spool/$name"; }}; then
    echo "geo-sync: could not record this push in $spool; run 'geo-sync primary scan'" >&2
fi
exit 0
"""


def pre_receive_script(storage_root: Path) -> str:
    """The pre-receive hook: refuse the push while the site takes no writes (maintenance
    mode, or demoted), printing why. A file test, so pushes stay fast."""
    marker = shlex.quote(str(storage_root / READ_ONLY_MARKER))
    return f"""#!/bin/sh
{PRE_MARKER} (installed by `geo-sync primary install-hooks`)
# Refuses pushes while `geo-sync primary maintenance on` is in force or this site was
# demoted; the marker file holds the reason.
if [ -e {marker} ]; then
    echo "geo-sync: push refused: $(cat {marker} 2>/dev/null)" >&2
    exit 1
fi
exit 0
"""


@dataclass(frozen=True)
class HookReport:
    """Where the hook went, and repositories left alone because they had a foreign hook."""

    installed: list[str]
    foreign: list[str]
    template: Path


def _write_executable(path: Path, content: str) -> None:
    write_atomically(path, content, mode=0o755)


def install_hooks(repos_root: Path, spool: Path) -> HookReport:
    """Install the hooks into every bare repository under ``repos_root`` and a template
    dir: post-receive records pushes in ``spool`` (created here), pre-receive refuses
    pushes while the site takes no writes (the spool's parent is the storage root).

    A repository that already has a hook of its own (of either kind) is not touched.
    """
    (spool / REJECTED_DIR).mkdir(parents=True, exist_ok=True)
    scripts = {"post-receive": (MARKER, hook_script(spool)),
               "pre-receive": (PRE_MARKER, pre_receive_script(spool.parent))}
    installed, foreign = [], []
    for relpath in git_original().discover(repos_root):
        hooks_dir = repos_root / relpath / "hooks"
        if any((hooks_dir / name).exists()
               and marker not in (hooks_dir / name).read_text(errors="replace")
               for name, (marker, _) in scripts.items()):
            foreign.append(relpath)
            continue
        for name, (_, script) in scripts.items():
            _write_executable(hooks_dir / name, script)
        installed.append(relpath)
    template = repos_root / TEMPLATE_DIR
    for name, (_, script) in scripts.items():
        _write_executable(template / "hooks" / name, script)
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
    repositories = git_original()
    repositories.validate_path(relpath)
    full = resolve_inside(repos_root, relpath)
    if not is_bare_repository(full):
        raise InvalidInput(f"{repository} is not a bare git repository")
    found = repositories.describe(full, relpath)
    with write_transaction(engine) as conn:
        known = conn.execute(
            select(CatalogItem.id).where(
                CatalogItem.replicable_type == repositories.name,
                CatalogItem.path == relpath,
            )
        ).first()
        event = "updated" if known else "created"
        return publish(
            conn,
            Change(repositories.name, event, relpath, size=found.size,
                   checksum=found.checksum),
            accepted_push=True,
        )


def drain_spool(engine: Engine, storage_root: Path) -> int:
    """Publish one event per repository recorded in the spool; return how many.

    An entry is removed only after its event is committed, so a crash re-publishes
    rather than loses. An entry naming something that is not a repository under
    the storage root is moved to ``rejected/`` and logged, for the admin to see.
    """
    spool = spool_dir(storage_root)
    try:
        entries = sorted(spool.iterdir())
    except FileNotFoundError:
        return 0
    pushed: dict[str, list[Path]] = defaultdict(list)
    for entry in entries:
        name = entry.name
        if name.startswith(TEMP_PREFIX):
            _remove_if_stale(entry)
        elif not name.startswith(".") and name != REJECTED_DIR:
            try:
                pushed[entry.read_text(errors="replace").strip()].append(entry)
            except FileNotFoundError:  # drained concurrently (a second `primary serve`)
                continue
    repos_root = storage_root / git_original().storage_dir
    published = 0
    for repository, recorded in pushed.items():
        try:
            publish_push(engine, repos_root, Path(repository))
            published += 1
        except SiteReadOnly:  # demoted: nothing is published here any more
            break
        except InvalidInput as exc:
            log.warning("push_rejected", repository=repository, error=str(exc),
                        hint=f"the entry is kept in {spool / REJECTED_DIR}")
            recorded[0].replace(spool / REJECTED_DIR / recorded[0].name)
        except GeoSyncError as exc:  # e.g. the database is down: keep, retry next drain
            log.warning("push_not_published", repository=repository, error=str(exc))
            continue
        for entry in recorded:
            entry.unlink(missing_ok=True)
    return published


def push_pending(storage_root: Path, repository: Path) -> bool:
    """Whether the spool holds a push of ``repository`` not published yet: its change is
    on disk, its event still to come. ``drain_spool`` removes an entry only after its
    event is committed, so a caller that looks here first and at the events after sees
    every recorded push in one or the other."""
    try:
        entries = list(spool_dir(storage_root).iterdir())
    except FileNotFoundError:
        return False
    target = repository.resolve()
    for entry in entries:
        if entry.name.startswith((TEMP_PREFIX, ".")) or entry.name == REJECTED_DIR:
            continue
        try:
            named = entry.read_text(errors="replace").strip()
        except (FileNotFoundError, IsADirectoryError):  # drained meanwhile
            continue
        if named and Path(named).resolve() == target:
            return True
    return False


def _remove_if_stale(entry: Path) -> None:
    try:
        if time.time() - entry.stat().st_mtime > STALE_TEMP_SECONDS:
            entry.unlink()
    except FileNotFoundError:
        pass
