"""Explaining a config that does not load: which key, from which source, what to do.

A config is the TOML file plus ``GEO_SYNC_<SECTION>__<KEY>`` environment overrides;
an error is blamed on the source it came from, names the TOML line when the file
does not parse, and suggests the key that was probably meant when one is unknown.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from geo_sync.errors import ConfigError

ENV_PREFIX = "GEO_SYNC_"
ENV_DELIMITER = "__"
# Variables with our prefix that are not overrides of a key.
_NOT_OVERRIDES = {"GEO_SYNC_CONFIG"}
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[tuple[str, ...], str]:
    """The config keys the environment overrides, each with its variable's name."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in _NOT_OVERRIDES:
            loc = tuple(upper[len(ENV_PREFIX):].lower().split(ENV_DELIMITER))
            found[loc] = name
    return found


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The model class that holds the keys under ``loc`` (e.g. ('secondary',))."""
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = (typing.get_args(annotation)
                      if isinstance(annotation, types.UnionType) else (annotation,))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _did_you_mean(model: type[BaseModel], loc: tuple[str, ...]) -> str:
    holder = _model_at(model, loc[:-1])
    if holder is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(holder.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {'.'.join((*loc[:-1], close[0]))}?)" if close else ""


def _from_environment(loc: tuple[str, ...], data: Mapping[str, Any],
                      overrides: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable an error at ``loc`` came from, or None if it came from the file."""
    for length in range(len(loc), 0, -1):
        if loc[:length] in overrides:
            return overrides[loc[:length]]
    # A section the file lacks exists only because a variable created it.
    if loc and loc[0] not in data:
        return next((var for key, var in overrides.items() if key[:1] == loc[:1]), None)
    return None


def describe_validation(error: ValidationError, model: type[BaseModel], source: Path,
                        data: Mapping[str, Any]) -> ConfigError:
    """One ConfigError listing every bad key, each blamed on the file or its variable."""
    overrides = env_overrides()
    in_file: list[str] = []
    in_env: dict[str, list[str]] = {}
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        key = ".".join(loc)
        if item["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(model, loc)
        else:
            message = item["msg"]
        variable = _from_environment(loc, data, overrides)
        if variable is None:
            in_file.append(f"{key}: {message}")
        elif loc[0] not in data:
            in_env.setdefault(variable, [f"sets a key of [{loc[0]}], a section the file "
                                         "does not have"])
        else:
            in_env.setdefault(variable, []).append(f"{key}: {message}")
    env_text = "; ".join(f"environment variable {variable}: " + ", ".join(problems)
                         for variable, problems in in_env.items())
    if in_env and not in_file:
        return ConfigError(
            f"invalid environment override for {source}: {env_text}",
            hint="fix or unset the named environment variable; the file itself is fine",
        )
    parts = [f"invalid config {source}: " + "; ".join(in_file)] if in_file else []
    if in_env:
        parts.append(f"and {env_text}")
    return ConfigError(" ".join(parts))


def describe_toml(error: Exception, source: Path, text: str) -> ConfigError:
    """A TOML syntax error with the line it is on (the line's text is not echoed: it may
    hold a secret)."""
    message = str(error)
    match = _TOML_WHERE.search(message)
    if match:
        where = f"line {match.group(1)}, column {match.group(2)}"
        message = message[:match.start()]
    else:
        message = message.replace(" (at end of document)", "")
        where = f"line {max(1, len(text.splitlines()))} (end of file)"
    return ConfigError(f"config file {source} is not valid TOML at {where}: {message}",
                       hint="fix the syntax on that line (an unclosed quote or bracket may "
                       "start earlier)")


def describe_env_parse(error: Exception, source: Path) -> ConfigError:
    """pydantic-settings could not parse a variable's value (e.g. malformed JSON)."""
    field = re.search(r'field "([^"]+)"', str(error))
    variables = sorted(var for loc, var in env_overrides().items()
                       if field is None or loc[:1] == (field.group(1),))
    return ConfigError(f"invalid environment override for {source}: cannot parse "
                       f"{' or '.join(variables) or 'a GEO_SYNC_ variable'} ({error})",
                       hint="fix or unset the named GEO_SYNC_ environment variable; the file "
                       "itself is fine")
