from __future__ import annotations

from pathlib import Path

import pytest

from geo_sync.errors import ConfigError
from geo_sync.settings import SecondarySettings, load_settings, per_type
from replicators.type_map import REPLICATORS
from replicators.type_names import check_type_settings

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
primary_url = "https://primary:8650"
database_url = "sqlite:///t.db"
mirror_root = "mirror"
"""


def _batch_sizes(settings: SecondarySettings) -> dict[str, int]:
    return {name: per_type(settings.batch_size, name, cls.default_batch_size)
            for name, cls in REPLICATORS.items()}


def test_batch_sizes_default_per_type_and_one_number_sets_all(tmp_path: Path) -> None:
    defaults = _batch_sizes(load_settings(_write(tmp_path, SECONDARY)).require_secondary())
    assert defaults == {name: cls.default_batch_size for name, cls in REPLICATORS.items()}
    one = load_settings(_write(tmp_path, SECONDARY + "batch_size = 7\n")).require_secondary()
    assert set(_batch_sizes(one).values()) == {7}
    table = SECONDARY + "[secondary.batch_size]\nartifact = 100\n"
    sizes = _batch_sizes(load_settings(_write(tmp_path, table)).require_secondary())
    assert sizes["artifact"] == 100
    assert sizes["job_log"] == REPLICATORS["job_log"].default_batch_size
    for bad in ("batch_size = 0\n", "batch_size = 1001\n",
                "[secondary.batch_size]\nartifact = 0\n"):
        with pytest.raises(ConfigError, match="batch_size"):
            load_settings(_write(tmp_path, SECONDARY + bad))


def test_a_per_type_setting_naming_no_type_is_refused_with_the_types(tmp_path: Path) -> None:
    for field in ("concurrency", "batch_size", "verification_concurrency"):
        settings = load_settings(_write(tmp_path, SECONDARY + f"[secondary.{field}]\n"
                                        "widgets = 3\n")).require_secondary()
        with pytest.raises(ConfigError, match=f"secondary.{field}.widgets: unknown data type"):
            check_type_settings(settings)
