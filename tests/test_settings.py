from __future__ import annotations

from pathlib import Path

import pytest

from geo_sync.errors import ConfigError
from geo_sync.settings import load_settings

GOOD = """
role = "primary"
[primary]
database_url = "sqlite:///p.db"
storage_root = "storage"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_relative_paths_taken_from_the_file(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, GOOD))
    assert settings.require_primary().storage_root == tmp_path.resolve() / "storage"
    assert settings.require_primary().listen_port == 8650


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_SYNC_PRIMARY__LISTEN_PORT", "9999")
    assert load_settings(_write(tmp_path, GOOD)).require_primary().listen_port == 9999


@pytest.mark.parametrize(("text", "named"), [
    (GOOD + "colour = 'red'\n", "colour: unknown key"),
    (GOOD.replace('database_url = "sqlite:///p.db"\n', ""), "primary.database_url"),
    (GOOD.replace("sqlite:///p.db", "mysql://x"), "primary.database_url"),
    (GOOD + "listen_port = 'many'\n", "primary.listen_port"),
    ('role = "observer"\n', "role"),
])
def test_a_bad_or_missing_key_is_named_with_the_file(tmp_path: Path, text: str,
                                                     named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert named in caught.value.message
    assert str(path) in caught.value.message


def test_a_missing_file_and_broken_toml_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "role = \n"))


SECONDARY = """
role = "secondary"
[secondary]
name = "s1"
secret = "0123456789abcdef0123456789abcdef"
primary_url = "http://primary:8650"
database_url = "sqlite:///t.db"
mirror_root = "mirror"
"""


def test_batch_sizes_default_per_type_and_one_number_sets_all(tmp_path: Path) -> None:
    defaults = load_settings(_write(tmp_path, SECONDARY)).require_secondary().batch_size
    assert (defaults.repository, defaults.artifact, defaults.job_log) == (1, 25, 25)
    one = load_settings(_write(tmp_path, SECONDARY + "batch_size = 7\n")).require_secondary()
    assert (one.batch_size.repository, one.batch_size.artifact) == (7, 7)
    table = SECONDARY + "[secondary.batch_size]\nartifact = 100\n"
    assert load_settings(_write(tmp_path, table)).require_secondary().batch_size.artifact == 100
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings(_write(tmp_path, SECONDARY + "batch_size = 0\n"))
