"""Bare git repositories: mutable refs, replicated by mirror fetch."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import ClassVar

import pygit2
from pygit2.enums import FetchPrune

from geo_sync.errors import AuthError, GeoSyncError, MissingOnPrimary, TransientError, UnsafePath
from geo_sync.paths import TEMP_PREFIX
from geo_sync.tls import untrusted_hint
from geo_sync.tracking.models import Registry, registry_model
from geo_sync.tracking.sync_rows import Claimed
from replicators.base import Copy, FoundItem, KnownItem, Original, Replicator, SyncContext
from replicators.checksums import repository_checksum, repository_ref_lines
from replicators.transfer import IntegrityError, remove_path

REMOTE = "geo-primary"
REFSPEC = "+refs/*:refs/*"


def configure_git_timeouts(seconds: float) -> None:
    """libgit2 has no timeouts by default: a stalled primary would hang a worker forever."""
    pygit2.settings.server_connect_timeout = 10_000
    pygit2.settings.server_timeout = int(seconds * 1000)


_TRUSTED: set[Path] = set()
_TRUST_LOCK = threading.Lock()


def trust_ca_bundle(ca_bundle: Path | None) -> None:
    """Make libgit2 trust ``ca_bundle`` (besides the system's CAs) for HTTPS fetches.

    libgit2 has one TLS context per process, and loading a file adds its CAs to it: each
    file is loaded once. httpx is given its own context by the primary client."""
    if ca_bundle is None or ca_bundle in _TRUSTED:
        return
    with _TRUST_LOCK:
        if ca_bundle not in _TRUSTED:
            pygit2.settings.set_ssl_cert_locations(str(ca_bundle), None)
            _TRUSTED.add(ca_bundle)


def is_bare_repository(path: Path) -> bool:
    """Cheap structural test for a bare repository directory."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


class _BearerAuth(pygit2.RemoteCallbacks):
    """libgit2 ignores http.extraHeader; custom_headers is how a JWT gets on the wire."""

    def __init__(self, header: str) -> None:
        super().__init__()
        self._header = header

    def custom_headers(self) -> list[str]:
        return [self._header]


def _classify(error: pygit2.GitError, path: str, ca_bundle: Path | None) -> GeoSyncError:
    message = str(error)
    if "certificate" in message.lower() or "ssl" in message.lower():
        return TransientError(f"fetching repository {path} failed: TLS with the primary "
                              f"failed, its certificate not trusted by libgit2 ({message})",
                              hint=untrusted_hint(ca_bundle))
    if "404" in message:
        return MissingOnPrimary(f"repository {path} is missing on primary")
    if "401" in message or "authentication" in message:
        return AuthError(f"primary refused our credentials fetching {path}: {message}")
    return TransientError(f"fetching repository {path} failed: {message}")


def _stat_line(path: Path, name: str) -> bytes:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"{name} -\n".encode("utf-8", "surrogateescape")
    return f"{name} {stat.st_size} {stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape")


#: The tracking-DB table of this type (its name is only here and in old migrations).
RepositoryRegistry = registry_model("repository")


def size_on_disk(path: Path) -> int:
    """Bytes in the regular files under ``path``. A file or directory that vanishes
    while it is walked is skipped: a repository being pushed to has a quarantine
    directory (``objects/tmp_objdir-incoming-*``) that git removes when the push ends,
    and `Path.rglob` raised FileNotFoundError for it, which failed the whole drain of
    the push spool (every repository in it waited for the next drain)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):  # ignores vanished directories
        for name in filenames:
            try:
                info = (Path(dirpath) / name).stat()
            except FileNotFoundError:
                continue
            if S_ISREG(info.st_mode):
                total += info.st_size
    return total


class RepositoryOriginal(Original):
    """The primary's side of a repository: its size on disk and the checksum over
    HEAD and refs; any change of them is an update."""

    @classmethod
    def describe(cls, path: Path, relpath: str) -> FoundItem:
        return FoundItem(path=relpath, size=size_on_disk(path),
                         checksum=repository_checksum(path))

    @classmethod
    def change_event(cls, known: KnownItem, found: FoundItem) -> str | None:
        return None if known.checksum == found.checksum else "updated"


class RepositoryCopy(Copy):
    """The secondary's side of a repository: a mirror fetch of every ref, with prune;
    checked by its refs' checksum after proving their objects are there."""

    @classmethod
    def mirror_checksum(cls, path: Path) -> str:
        """The ref checksum, after proving every ref's object is really there: a removed
        pack leaves refs intact but their commits gone, which the checksum alone misses."""
        if not is_bare_repository(path):
            raise FileNotFoundError(f"no repository at {path}")
        repo = pygit2.Repository(str(path))
        for name in repo.references:
            target = repo.references[name].resolve().target
            if isinstance(target, pygit2.Oid) and target not in repo.odb:
                raise IntegrityError(f"{name} points at {target}, which is missing")
        return repository_checksum(path)

    @classmethod
    def fingerprint(cls, path: Path) -> str:
        """Names, sizes and mtimes of HEAD, packed-refs, every loose ref and every pack
        file, hashed: a moved, extra or edited ref or a removed pack changes it, with
        no object read."""
        if not is_bare_repository(path):
            raise FileNotFoundError(f"no repository at {path}")
        digest = hashlib.sha256()
        for name in ("HEAD", "packed-refs"):
            digest.update(_stat_line(path / name, name))
        for top in ("refs", "objects/pack"):
            for dirpath, dirnames, filenames in os.walk(path / top):
                dirnames.sort()
                for filename in sorted(filenames):
                    full = Path(dirpath) / filename
                    digest.update(_stat_line(full, full.relative_to(path).as_posix()))
        return digest.hexdigest()

    @classmethod
    def sync(cls, ctx: SyncContext, item: Claimed) -> None:
        """Mirror-fetch every ref with prune. A first clone, or a rebuild after a failed
        verification, is cloned aside and renamed into place when whole."""
        dest = cls.destination(ctx, item)
        if is_bare_repository(dest) and not item.fresh:
            cls._fetch(ctx, item, pygit2.Repository(str(dest)))
            return
        staging = dest.parent / f"{TEMP_PREFIX}{dest.name}-{uuid.uuid4().hex}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            cls._fetch(ctx, item, pygit2.init_repository(str(staging), bare=True))
            if dest.exists():  # the copy being rebuilt, or a broken leftover
                remove_path(dest)
            staging.rename(dest)
        finally:
            if staging.exists():
                remove_path(staging)

    @classmethod
    def _fetch(cls, ctx: SyncContext, item: Claimed, repo: pygit2.Repository) -> None:
        url = ctx.client.git_url(item.path)
        trust_ca_bundle(ctx.client.ca_bundle)
        if REMOTE in repo.remotes.names():
            repo.remotes.set_url(REMOTE, url)
        else:
            repo.remotes.create(REMOTE, url, REFSPEC)
            repo.config[f"remote.{REMOTE}.mirror"] = True
        remote = repo.remotes[REMOTE]
        try:
            remote.fetch([REFSPEC], callbacks=_BearerAuth(ctx.client.auth_header()),
                         prune=FetchPrune.PRUNE)
            # The fetch's own ref advertisement (kept after it disconnects): no second
            # connection, and HEAD as of the refs just fetched.
            heads = remote.list_heads(connect=False)
        except pygit2.GitError as exc:
            raise _classify(exc, item.path, ctx.client.ca_bundle) from None
        for head in heads:
            if head.name == "HEAD" and head.symref_target:
                # HEAD follows the primary's default branch.
                repo.references.create("HEAD", head.symref_target, force=True)


class RepositoryReplicator(RepositoryOriginal, RepositoryCopy, Replicator):
    """``repositories/<full path>.git``; checksum over HEAD and refs."""

    name: ClassVar[str] = "repository"
    events: ClassVar[tuple[str, ...]] = ("created", "updated", "renamed", "deleted")
    storage_dir: ClassVar[str] = "repositories"
    default_concurrency: ClassVar[int] = 8
    default_batch_size: ClassVar[int] = 1
    default_verification_concurrency: ClassVar[int] = 4
    transport: ClassVar[str] = "git"
    registry_table: ClassVar[Registry] = RepositoryRegistry

    @classmethod
    def validate_path(cls, path: object, *, field: str = "path") -> str:
        valid = super().validate_path(path, field=field)
        if not valid.endswith(".git") or valid.rsplit("/", 1)[-1] == ".git":
            raise UnsafePath(f"repository {field} must end in .git: {valid!r}")
        return valid

    @classmethod
    def not_one_item(cls, path: Path) -> str | None:
        """A repository's copy is one bare repository holding no other repository."""
        if path.is_symlink() or not path.exists():
            return None
        if not is_bare_repository(path):
            return "not a bare repository: it may hold other repositories"
        for dirpath, dirnames, _ in os.walk(path):
            for name in dirnames:
                if name.endswith(".git") and is_bare_repository(Path(dirpath) / name):
                    return f"holds another repository: {Path(dirpath, name).relative_to(path)}"
        return None

    @classmethod
    def discover(cls, root: Path) -> Iterator[str]:
        for dirpath, dirnames, _ in os.walk(root):
            current = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                child = current / name
                if child.is_symlink():
                    continue
                if name.endswith(".git") and is_bare_repository(child):
                    yield child.relative_to(root).as_posix()
                elif not name.startswith("."):
                    keep.append(name)
            dirnames[:] = keep

    @classmethod
    def same_copy(cls, ours: Path, theirs: Path) -> bool:
        """Two repositories are equal when their refs and HEAD are."""
        return (set(repository_ref_lines(pygit2.Repository(str(ours))))
                == set(repository_ref_lines(pygit2.Repository(str(theirs)))))
