"""Relative storage paths: validation and safe resolution inside a storage root; and
where the config file is (for commands that must not load the settings to know it).

Paths arrive from events, catalog rows and URLs, i.e. from the network. We refuse
anything that is not already a normalized relative path instead of normalizing
it, so that the primary and every secondary agree on exactly one spelling.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from geo_sync.errors import ConfigError, UnsafePath

MAX_PATH_BYTES = 4096
#: Names of temporary files and directories geo-sync writes before renaming into place.
#: Reserved: a path component starting with it is refused, since every janitor removes it.
TEMP_PREFIX = ".geo-sync-tmp-"
MAX_COMPONENT_BYTES = 255
#: C0 controls, DEL and C1 controls: invisible in logs and terminals, and some break
#: HTTP headers. The geo_check_path() SQL function (migration 0003) refuses the same set.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def utf8_length(value: str, field: str) -> int:
    """Bytes of ``value`` in UTF-8; InvalidInput if it holds a lone surrogate, which
    is what Python makes of bytes that are not UTF-8 (a file name from a foreign
    file system) and what neither PostgreSQL, JSON nor a URL can carry."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePath(f"{field} is not valid UTF-8: {value!r}") from None


def validate_relpath(path: object, *, field: str = "path") -> str:
    """Return ``path`` if it is a safe, normalized relative path; raise UnsafePath otherwise."""
    if not isinstance(path, str):
        raise UnsafePath(f"{field} must be a string, got {type(path).__name__}")
    if not path:
        raise UnsafePath(f"{field} is empty")
    if "\x00" in path:
        raise UnsafePath(f"{field} contains a NUL byte")
    if CONTROL.search(path):
        raise UnsafePath(f"{field} contains a control character")
    if "\\" in path:
        raise UnsafePath(f"{field} contains a backslash: {path!r}")
    if utf8_length(path, field) > MAX_PATH_BYTES:
        raise UnsafePath(f"{field} is longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise UnsafePath(f"{field} is absolute: {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePath(f"{field} is not a normalized relative path: {path!r}")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise UnsafePath(f"{field} has a component longer than {MAX_COMPONENT_BYTES} bytes")
        if part.startswith(TEMP_PREFIX):
            raise UnsafePath(f"{field} has a component starting with {TEMP_PREFIX!r}, "
                             f"reserved for geo-sync's temporary files: {path!r}")
    return path


def resolve_inside(root: Path, relpath: str, *, field: str = "path") -> Path:
    """Join ``relpath`` to ``root`` and prove the result, after symlinks, stays inside it.

    The target itself need not exist; any existing prefix is resolved, so a
    symlinked directory pointing outside the root is caught before we write
    through it.
    """
    validate_relpath(relpath, field=field)
    real_root = Path(os.path.realpath(root))
    candidate = root / relpath
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        raise UnsafePath(f"{field} {relpath!r} resolves outside its storage root (symlink?)")
    return candidate


class InsideRoot:
    """``resolve_inside`` for many paths under one root, for the life of one batch:
    each directory is resolved once, and per path only its last component is looked
    at (one lstat). ``os.path.realpath`` walks every component lstat by lstat in
    Python: once per blob it was a fifth of a `primary serve` process answering blob
    batches and a tenth of a worker (py-spy, bench.scale). Same answers as
    ``resolve_inside``: a last component that is a symlink gets its full check."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root)
        self._inside: dict[str, bool] = {}  # directory (relative) -> resolves inside

    def __call__(self, relpath: str, *, field: str = "path") -> Path:
        validate_relpath(relpath, field=field)
        parent = relpath.rpartition("/")[0]
        inside = self._inside.get(parent)
        if inside is None:
            real = os.path.realpath(self.root / parent) if parent else self._real_root
            inside = self._inside[parent] = (real == self._real_root or real.startswith(
                self._real_root.rstrip("/") + "/"))
        if not inside:
            raise UnsafePath(f"{field} {relpath!r} resolves outside its storage root (symlink?)")
        candidate = self.root / relpath
        if candidate.is_symlink():  # False when it does not exist
            return resolve_inside(self.root, relpath, field=field)
        return candidate


#: The environment variable naming the config file when ``--config`` is not given.
CONFIG_ENV = "GEO_SYNC_CONFIG"


def config_path_from(option: str | None) -> Path:
    """The config file named by ``--config`` or ``GEO_SYNC_CONFIG``; one of them is required."""
    raw = option or os.environ.get(CONFIG_ENV)
    if not raw:
        raise ConfigError(
            "no config file given",
            hint=f"pass --config FILE or set {CONFIG_ENV}; `geo-sync primary init` writes one",
        )
    return Path(raw)
