"""The selection predicate and its validation, against an independent oracle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo_sync.errors import ConfigError
from geo_sync.selection import EVERYTHING, Selection, compile_pattern, matches
from geo_sync.settings import load_settings
from replicators.type_map import REPLICATORS
from replicators.type_names import check_type_settings
from tests.test_settings import SECONDARY

# A small alphabet so that generated patterns and paths often meet.
NAMES = st.sampled_from(["a", "b", "ab", "a.b", "x-1", "ba"])
WILD = st.sampled_from(["*", "?", "a*", "*b", "?b", "a?", "*.*", "**"])
PATHS = st.lists(NAMES, min_size=1, max_size=5).map("/".join)
PATTERNS = st.lists(st.one_of(NAMES, WILD), min_size=1, max_size=5).map("/".join)


def oracle(pattern: str, path: str) -> bool:
    """The documented rules written another way: the whole pattern as one regex, then
    "matches the path or one of its leading directories"."""
    out = []
    segments = pattern.removesuffix("/").split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            # Any number of whole segments, none included, with their slashes.
            out.append("(?:[^/]+(?:/[^/]+)*)?" if last else "(?:[^/]+/)*")
            continue
        out.append("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                           for c in segment))
        if not last:
            out.append("/")
    body = "".join(out).replace("/(?:[^/]+(?:/[^/]+)*)?", "(?:/[^/]+)*")
    return re.fullmatch(f"(?:{body})(?:/.*)?", path) is not None


@given(PATTERNS, PATHS)
def test_a_pattern_matches_exactly_the_paths_the_documented_rules_say(pattern: str,
                                                                      path: str) -> None:
    assert matches(pattern, path) == oracle(pattern, path)


@st.composite
def _directory_and_a_pattern_matching_it(draw: st.DrawFn) -> tuple[str, str]:
    """A directory, and a pattern made from it by generalising its segments (so it
    matches by construction, instead of filtering random pairs), maybe cut short."""
    segments = draw(st.lists(NAMES, min_size=1, max_size=5))
    pattern = [draw(st.sampled_from([name, "*", "**", f"{name[0]}*", "?" * len(name)]))
               for name in segments]
    kept = draw(st.integers(min_value=1, max_value=len(pattern)))
    return "/".join(segments), "/".join(pattern[:kept])


@given(_directory_and_a_pattern_matching_it(), PATHS)
def test_a_pattern_that_matches_a_directory_matches_everything_under_it(
        made: tuple[str, str], rest: str) -> None:
    directory, pattern = made
    assert matches(pattern, directory) == oracle(pattern, directory) is True
    assert matches(pattern, f"{directory}/{rest}")


@given(st.text(max_size=40))
def test_any_text_is_a_pattern_or_refused_naming_itself(text: str) -> None:
    try:
        compile_pattern(text)
    except ValueError as exc:
        assert repr(text) in str(exc)


@pytest.mark.parametrize(("pattern", "why"), [
    ("", "is empty"), ("/abs", "starts with '/'"), ("a/../b", "'..'"), ("a//b", "empty"),
    ("a**", "whole segment"), ("[ab]", "do not support"), ("a{b,c}", "do not support"),
    ("a\tb", "control character"), ("x" * 1025, "longer than"),
])
def test_a_bad_pattern_is_refused_with_the_reason(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        compile_pattern(pattern)


@given(PATTERNS, PATTERNS, PATHS)
def test_exclude_wins_over_include(include: str, exclude: str, path: str) -> None:
    selection = Selection.of({"*": [include]}, {"*": [exclude]})
    assert selection.selects("artifact", path) == (matches(include, path)
                                                   and not matches(exclude, path))


def test_a_types_own_rules_replace_the_rules_for_every_type() -> None:
    selection = Selection.of({"*": ["group-a"], "artifact": ["pipelines/1*"]},
                             {"*": ["**/scratch"]})
    assert selection.selects("repository", "group-a/p.git")
    assert not selection.selects("repository", "group-b/p.git")
    assert not selection.selects("repository", "group-a/scratch/p.git")
    assert selection.selects("artifact", "pipelines/12/artifacts.zip")
    assert not selection.selects("artifact", "group-a/x")
    assert Selection.of({"job_log": []}).selects("job_log", "jobs/1/trace.log") is False
    assert EVERYTHING.selects("job_log", "anything/at/all") and not EVERYTHING.selective


@given(st.dictionaries(st.sampled_from(["*", "artifact", "job_log"]),
                       st.lists(PATTERNS, max_size=3), max_size=3),
       st.dictionaries(st.sampled_from(["*", "repository"]),
                       st.lists(PATTERNS, max_size=3), max_size=2))
def test_a_selection_survives_its_stored_form(include: dict[str, list[str]],
                                              exclude: dict[str, list[str]]) -> None:
    selection = Selection.of(include, exclude)
    again = Selection.from_json(selection.to_json())
    assert again.to_json() == selection.to_json()
    assert again.selective == selection.selective
    for name in REPLICATORS:
        for path in ("a", "a/b", "ab/x-1/b"):
            assert again.selects(name, path) == selection.selects(name, path)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_config_takes_a_selection_per_type_or_as_one_list(tmp_path: Path) -> None:
    text = SECONDARY + ('[secondary.selection]\ninclude = { "*" = ["group-a/"], '
                        'artifact = ["pipelines/1*/**"] }\nexclude = ["**/tmp"]\n')
    settings = load_settings(_write(tmp_path, text)).require_secondary()
    check_type_settings(settings)
    rules = settings.selection.rules()
    assert rules.selective
    assert rules.selects("repository", "group-a/x.git")
    assert not rules.selects("repository", "group-a/tmp")
    assert rules.selects("artifact", "pipelines/17/artifacts.zip")
    assert not load_settings(_write(tmp_path, SECONDARY)).require_secondary(
    ).selection.rules().selective


def test_a_bad_pattern_in_the_config_is_named_with_its_key(tmp_path: Path) -> None:
    path = _write(tmp_path, SECONDARY + '[secondary.selection]\ninclude = '
                  '{ artifact = ["ok/**", "/etc/passwd"] }\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = caught.value.message
    assert "secondary.selection.include" in message
    assert "'/etc/passwd'" in message
    assert str(path) in message


def test_a_selection_naming_no_type_is_refused_with_a_guess(tmp_path: Path) -> None:
    path = _write(tmp_path, SECONDARY + '[secondary.selection]\nexclude = '
                  '{ artifacts = ["x"] }\n')
    settings = load_settings(path).require_secondary()
    with pytest.raises(ConfigError, match=r"selection.exclude.artifacts: unknown data type "
                                          r"\(did you mean secondary.selection.exclude.artifact"):
        check_type_settings(settings)
