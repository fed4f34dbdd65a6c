"""Writing small TOML config files (tomllib only reads)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from geo_sync.paths import TEMP_PREFIX


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(str(value))


def dumps(sections: dict[str, Any]) -> str:
    """Render top-level scalars, then one table per dict value."""
    lines = [f"{key} = {_value(v)}" for key, v in sections.items() if not isinstance(v, dict)]
    for name, table in sections.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` via a temp file and rename; never a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    Path(tmp).chmod(mode)
    Path(tmp).replace(path)
