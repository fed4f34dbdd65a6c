"""What the cells share: the workload's shape, and what `status` shows of a fault."""

from __future__ import annotations

import json
from typing import Any

from tests.deployment import wait_for
from tests.faults.rig import Rig

SMALL = {"repositories": 2, "artifacts": 4, "logs": 2}


def begin(rig: Rig, **initial: int) -> None:
    """Data the site had before, the daemons started, the first backfill read."""
    rig.workload.initial(**{**SMALL, **initial})
    rig.deployment.start()
    wait_for(rig.deployment.caught_up, "the first backfill to be read", 90)


def partial_transfer(rig: Rig) -> bool:
    """Some copy is part-written in a temp file right now."""
    for path in rig.deployment.temp_files():
        # Temp files are renamed into place while we look: one gone is not a transfer.
        try:
            if path.is_file() and path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            continue
    return False


def pending(status: dict[str, Any]) -> bool:
    """Status shows work not done yet (items not synced, or events not applied)."""
    if "error" in status:
        return False
    return any(t["synced"] < t["total"] for t in status["types"].values()) or \
        bool(status["lag"]["events"])


def errors_text(status: dict[str, Any]) -> str:
    """Everything status says went wrong, as one string."""
    if "error" in status:
        return str(status["error"])
    parts = [str(status["cursor"].get("last_error") or ""),
             str(status["primary"].get("error") or "")]
    parts += [str(e.get("error")) for e in status.get("last_errors", [])]
    return json.dumps(parts)


def shows(*words: str) -> Any:
    """A predicate: status names one of ``words`` (case-insensitive)."""
    def predicate(status: dict[str, Any]) -> bool:
        text = errors_text(status).lower()
        return any(word.lower() in text for word in words)
    return predicate


def unreachable(status: dict[str, Any]) -> bool:
    return "error" not in status and not status["primary"]["reachable"]
