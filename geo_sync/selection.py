"""Selective sync: which items a secondary replicates, as include and exclude patterns.

The one predicate is ``Selection.selects(type_name, path)``; the cursor, the backfill,
`reselect`, `orphans`, and whatever else must know whether a secondary holds an item
(a mirror server that proxies what it lacks, a promotion that must refuse a partial
copy) ask it and nothing else.

Patterns are ``/``-separated globs over an item's path inside its type's storage
directory (``group-a/project.git``, ``pipelines/7/artifacts.zip``):

- ``*`` matches any run of characters inside one segment, ``?`` one character;
- ``**`` as a whole segment matches any number of segments, none included;
- a pattern that matches an item's leading directories matches the item, so
  ``group-a`` (or ``group-a/``) selects everything under ``group-a/``.

An item is selected when some include pattern matches it (no include rule: every
item) and no exclude pattern does. Rules are given per type name, ``"*"`` for every
type not named; a type's own rules replace the ``"*"`` ones, as with every per-type
setting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

ALL_TYPES = "*"
MAX_PATTERN_CHARS = 1024
_UNSUPPORTED = set("[]{}\\")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> tuple[re.Pattern[str] | None, ...]:
    """The pattern's segments, each a regex or None for ``**``; ValueError naming the
    pattern and what is wrong with it."""
    def bad(why: str) -> ValueError:
        return ValueError(f"pattern {pattern!r}: {why}")

    if not isinstance(pattern, str) or not pattern:
        raise bad("is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise bad(f"is longer than {MAX_PATTERN_CHARS} characters")
    if _CONTROL.search(pattern):
        raise bad("holds a control character")
    if pattern.startswith("/"):
        raise bad("starts with '/': patterns are relative to the type's storage directory")
    if unsupported := sorted(_UNSUPPORTED & set(pattern)):
        raise bad(f"uses {' '.join(unsupported)}, which patterns do not support "
                  "(only *, ? and ** are wildcards)")
    segments = pattern.removesuffix("/").split("/")
    compiled: list[re.Pattern[str] | None] = []
    for segment in segments:
        if segment in ("", ".", ".."):
            raise bad(f"has an empty, '.' or '..' segment ({segment!r})")
        if segment == "**":
            compiled.append(None)
        elif "**" in segment:
            raise bad(f"'**' must be a whole segment, not part of {segment!r}")
        else:
            body = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
                           for ch in segment)
            compiled.append(re.compile(body))
    return tuple(compiled)


def matches(pattern: str, path: str) -> bool:
    """Whether ``pattern`` matches ``path`` or one of its leading directories."""
    compiled = compile_pattern(pattern)
    parts = path.split("/")
    # Each state is "pattern segments consumed"; a path segment advances every state.
    states = _closure({0}, compiled)
    for part in parts:
        if len(compiled) in states:
            return True  # the pattern matched the leading directories already
        advanced = set()
        for at in states:
            if at < len(compiled):
                segment = compiled[at]
                if segment is None:
                    advanced.add(at)  # ** takes this segment and may take more
                elif segment.fullmatch(part):
                    advanced.add(at + 1)
        states = _closure(advanced, compiled)
        if not states:
            return False
    return len(compiled) in states


def _closure(states: set[int], compiled: Sequence[re.Pattern[str] | None]) -> set[int]:
    """``states`` plus those reached by letting a ``**`` match no segment."""
    found = set(states)
    for start in sorted(states):
        at = start
        while at < len(compiled) and compiled[at] is None:
            at += 1
            found.add(at)
    return found


def check_rules(rules: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``rules`` with every pattern checked (ValueError naming the first bad one)."""
    for type_name, patterns in rules.items():
        for pattern in patterns:
            try:
                compile_pattern(pattern)
            except ValueError as exc:
                raise ValueError(f"{type_name}: {exc}") from None
    return {name: list(patterns) for name, patterns in rules.items()}


@dataclass(frozen=True)
class Selection:
    """Include and exclude rules per type name (``"*"``: every type not named)."""

    include: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exclude: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, include: Mapping[str, Sequence[str]] | None = None,
           exclude: Mapping[str, Sequence[str]] | None = None) -> Selection:
        """A selection from plain mappings; ValueError naming a bad pattern."""
        return cls({k: tuple(v) for k, v in check_rules(include or {}).items()},
                   {k: tuple(v) for k, v in check_rules(exclude or {}).items()})

    @property
    def selective(self) -> bool:
        """Whether some item may be left out (False: the secondary holds everything)."""
        return bool(self.include) or any(self.exclude.values())

    def rules_for(self, type_name: str) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """(include patterns or None for "everything", exclude patterns) of a type."""
        include = self.include.get(type_name, self.include.get(ALL_TYPES))
        return include, self.exclude.get(type_name, self.exclude.get(ALL_TYPES, ()))

    def selects(self, type_name: str, path: str) -> bool:
        """Whether this secondary replicates the item of ``type_name`` at ``path``."""
        include, exclude = self.rules_for(type_name)
        if include is not None and not any(matches(p, path) for p in include):
            return False
        return not any(matches(p, path) for p in exclude)

    def to_json(self) -> str | None:
        """Canonical text for the tracking DB; None when nothing is left out."""
        if not self.selective:
            return None
        return json.dumps({"include": {k: list(v) for k, v in sorted(self.include.items())},
                           "exclude": {k: list(v) for k, v in sorted(self.exclude.items())}},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Selection:
        """The selection ``to_json`` wrote (None or empty: everything)."""
        return _parsed(text) if text else EVERYTHING

    def describe(self) -> list[str]:
        """The rules as lines for people: ``artifact: include a/**, b; exclude c``."""
        lines = []
        for name in sorted(set(self.include) | set(self.exclude)):
            parts = []
            if name in self.include:
                parts.append("include " + (", ".join(self.include[name]) or "nothing"))
            if self.exclude.get(name):
                parts.append("exclude " + ", ".join(self.exclude[name]))
            label = "every type" if name == ALL_TYPES else name
            lines.append(f"{label}: {'; '.join(parts)}")
        return lines


EVERYTHING = Selection()


@lru_cache(maxsize=16)
def _parsed(text: str) -> Selection:
    data = json.loads(text)
    return Selection.of(data.get("include"), data.get("exclude"))
