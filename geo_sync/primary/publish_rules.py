"""Publishing's refusals, written once for its two implementations.

``publish.py`` (the portable path) raises them with ``refuse``; the ``geo_publish()``
SQL function (``publish_sql.py``) is rendered with ``raise_sql`` from the same table,
so both say the same words with the same SQLSTATE, and ``from_sqlstate`` turns the
function's refusal back into the error the portable path raises. Path rules are
``geo_sync.paths``'s (mirrored by 0003's ``geo_check_path``); the accepted (type,
event) pairs are a table both read (``data_types.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from geo_sync.errors import GeoSyncError, InvalidInput, NotFound

#: SQLSTATEs: invalid_parameter_value and no_data_found.
INVALID = "22023"
NOT_FOUND = "P0002"
#: The SQL function's messages start with its name; the portable path's do not.
SQL_PREFIX = "geo_publish: "
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Refusal:
    """One way publishing says no: its SQLSTATE, message template and operator hint."""

    sqlstate: str
    template: str
    hint: str | None = None


REFUSALS: dict[str, Refusal] = {
    "unknown_event": Refusal(INVALID, "unknown event {event} for type {type}",
                             "the primary database does not accept this event: run "
                             "`geo-sync primary migrate` if the data type is new"),
    "bad_record_id": Refusal(INVALID,
                             "record_id must be 1 to 255 bytes without control characters"),
    "bad_checksum": Refusal(INVALID, "checksum must be 64 lowercase hex digits (sha256)"),
    "old_path_not_renamed": Refusal(INVALID, "old_path is only valid for renamed events"),
    "rename_without_source": Refusal(INVALID,
                                     "renamed needs record_id or old_path to find the item"),
    "delete_unknown": Refusal(NOT_FOUND, "cannot delete: the catalog holds no {type} {item}",
                              "check the record id or path; nothing was changed"),
    "delete_elsewhere": Refusal(INVALID, "{type} record {record} is at {at}, not {path}; "
                                "nothing was deleted"),
    "rename_unknown": Refusal(NOT_FOUND, "cannot rename: no {type} {item}",
                              "check the record id or old path; nothing was changed"),
    "rename_elsewhere": Refusal(INVALID, "{type} record {record} is at {at}, not {path}; "
                                "nothing was renamed"),
    "path_taken": Refusal(INVALID, "{type} path {path} belongs to record {owner}, not "
                          "{record}; delete or rename {owner} first"),
    # Only the SQL function can see this one: a concurrent transaction took the path
    # between its check and its update (SQLite's writers are serialized).
    "path_taken_meanwhile": Refusal(INVALID, "{type} path {path} belongs to another record, "
                                    "not {record}; delete or rename it first"),
    "upsert_elsewhere": Refusal(INVALID, "{type} record {record} is at {at}, not {path}; "
                                "publish renamed to move it"),
}


def _error(sqlstate: str, message: str, hint: str | None) -> GeoSyncError:
    if sqlstate == NOT_FOUND:
        return NotFound(message, hint=hint)
    return InvalidInput(message, hint=hint)


def refuse(name: str, **fields: object) -> GeoSyncError:
    """The error for refusal ``name`` with its fields filled in (raise it)."""
    refusal = REFUSALS[name]
    return _error(refusal.sqlstate, refusal.template.format(**fields), refusal.hint)


def from_sqlstate(sqlstate: str | None, message: str) -> GeoSyncError | None:
    """The error the portable path raises for the SQL function's refusal (22023 also
    covers 0003's path rules); None if the SQLSTATE is none of publishing's."""
    if sqlstate not in (INVALID, NOT_FOUND):
        return None
    message = message.removeprefix(SQL_PREFIX)
    hint = next((refusal.hint for refusal in REFUSALS.values()
                 if refusal.sqlstate == sqlstate and _matches(refusal.template, message)), None)
    return _error(sqlstate, message, hint)


def _matches(template: str, message: str) -> bool:
    parts = [re.escape(part) for part in _FIELD.split(template)[::2]]
    return re.fullmatch("(.*)".join(parts), message, re.DOTALL) is not None


def raise_sql(name: str, **expressions: str) -> str:
    """Refusal ``name`` as a PL/pgSQL ``RAISE``, each field given as a SQL expression."""
    refusal = REFUSALS[name]
    args = [expressions[field] for field in _FIELD.findall(refusal.template)]
    text = _FIELD.sub("%", refusal.template.replace("%", "%%")).replace("'", "''")
    return (f"RAISE EXCEPTION '{SQL_PREFIX}{text}'{''.join(', ' + arg for arg in args)} "
            f"USING ERRCODE = '{refusal.sqlstate}'")
