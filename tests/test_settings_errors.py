"""A config that does not load says which key, from which source, on which line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_sync.errors import ConfigError
from geo_sync.settings import PrimarySettings, SecondarySettings, load_settings
from replicators.type_names import check_type_settings

PRIMARY = """role = "primary"
[primary]
database_url = "sqlite:///p.db"
storage_root = "storage"
"""


def _error(path: Path, text: str) -> ConfigError:
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


def _misspell(key: str, index: int) -> str:
    """``key`` with one letter doubled: a typo close enough to be recognised."""
    index %= len(key)
    return key[:index] + key[index] + key[index:]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(set(PrimarySettings.model_fields) - {"database_url",
                                                                      "storage_root"})),
       index=st.integers(min_value=0, max_value=40))
def test_a_misspelt_key_is_named_with_the_key_that_was_meant(tmp_path: Path, key: str,
                                                             index: int) -> None:
    typo = _misspell(key, index)
    error = _error(tmp_path / "config.toml", PRIMARY + f"{typo} = 1\n")
    assert f"primary.{typo}: unknown key (did you mean primary.{key}?)" in error.message


def test_a_misspelt_key_in_a_nested_table_is_suggested_too(tmp_path: Path) -> None:
    text = PRIMARY.replace('role = "primary"', 'role = "secondary"').replace(
        "[primary]", "[secondary]").replace("storage_root", "mirror_root") + (
        'name = "s"\nsecret = "' + "k" * 40 + '"\nprimary_url = "https://p"\n'
        "[secondary.concurrency]\nartifactt = 3\n")
    (tmp_path / "config.toml").write_text(text)
    settings = load_settings(tmp_path / "config.toml").require_secondary()
    with pytest.raises(ConfigError) as caught:
        check_type_settings(settings)
    assert "did you mean secondary.concurrency.artifact?" in caught.value.message


def test_a_key_like_nothing_known_gets_no_suggestion(tmp_path: Path) -> None:
    error = _error(tmp_path / "config.toml", PRIMARY + "zzzzqqq = 1\n")
    assert "primary.zzzzqqq: unknown key" in error.message
    assert "did you mean" not in error.message


@pytest.mark.parametrize(("variable", "value"), [
    ("GEO_SYNC_PRIMARY__LISTEN_PORT", "not-a-port"),
    ("GEO_SYNC_PRIMARY__LISTEN_PORT", "99999"),
    ("GEO_SYNC_PRIMARY__BOGUS_KEY", "1"),
    ("GEO_SYNC_SECONDARY__NAME", "east"),
    ("GEO_SYNC_SECONDARY__BATCH_SIZE", "{not json"),
])
def test_a_bad_environment_override_is_blamed_on_its_variable_not_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    error = _error(tmp_path / "config.toml", PRIMARY)
    assert error.message.startswith("invalid environment override")
    assert variable in error.message
    assert "the file itself is fine" in error.hint


def test_errors_in_file_and_environment_are_each_blamed_on_their_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_SYNC_PRIMARY__LISTEN_PORT", "many")
    error = _error(tmp_path / "config.toml", PRIMARY + "colour = 'red'\n")
    assert error.message.startswith(f"invalid config {tmp_path / 'config.toml'}: ")
    assert "primary.colour: unknown key" in error.message
    assert "environment variable GEO_SYNC_PRIMARY__LISTEN_PORT" in error.message


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.integers(min_value=1, max_value=4),
       broken=st.sampled_from(['x = "unclosed', "x = ", "= 1", "[unclosed", "x = [1,"]))
def test_broken_toml_names_the_line_without_echoing_it(tmp_path: Path, line: int,
                                                       broken: str) -> None:
    lines = PRIMARY.splitlines()
    lines.insert(line, broken + "  # s3cret-value")
    text = "\n".join(lines) + "\n"
    error = _error(tmp_path / "config.toml", text)
    assert "not valid TOML at line " in error.message
    reported = int(error.message.split("at line ")[1].split(",")[0].split(" ")[0])
    # An unclosed array is only noticed where the document ends.
    assert reported == line + 1 or (broken == "x = [1," and reported >= line + 1)
    assert "s3cret-value" not in str(error)


def test_the_secondary_secret_must_be_32_bytes(tmp_path: Path) -> None:
    base = {"name": "s", "primary_url": "https://p", "database_url": "sqlite:///t.db",
            "mirror_root": tmp_path}
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SecondarySettings(secret="é" * 15, **base)  # 30 bytes
    assert SecondarySettings(secret="é" * 16, **base).secret == "é" * 16  # 32 bytes
