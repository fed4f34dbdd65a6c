"""Writing small TOML config files (tomllib only reads)."""

from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(str(value))


def _table(prefix: str, table: dict[str, Any]) -> list[str]:
    lines = [f"{key} = {_value(v)}" for key, v in table.items() if not isinstance(v, dict)]
    for name, sub in table.items():
        if isinstance(sub, dict):
            header = f"{prefix}.{name}" if prefix else name
            lines += ["", f"[{header}]", *_table(header, sub)]
    return lines


def dumps(sections: dict[str, Any]) -> str:
    """Render scalars, then a ``[table]`` (``[table.sub]``, ...) for each dict value."""
    return "\n".join(_table("", sections)) + "\n"
